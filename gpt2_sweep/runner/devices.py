"""The `devices` config group mapped onto Lightning's Trainer arguments, checked against this machine.

torch is imported only where this machine's devices or dtypes are asked about: bad names are reported
before the seconds it takes to import.
"""
from collections.abc import Sequence

from ..errors import UsageError

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
STRATEGIES = ("auto", "ddp_spawn")
PRECISIONS = ("64-true", "32-true", "bf16-true", "16-true", "bf16-mixed", "16-mixed")
LOAD_DTYPES = {"bf16-true": "bfloat16", "16-true": "float16"}


def parse_ids(ids):
    """'auto', a count (2), a list of indices ([0, 1]) or the original's string form ('0,1')."""
    if ids == "auto":
        return "auto"
    if isinstance(ids, bool):
        raise UsageError(f"devices.ids={ids!r} is not allowed: give auto, a count, a list of indices or '0,1'")
    if isinstance(ids, int) and ids >= 1:
        return ids
    if isinstance(ids, str):
        text = ids.strip().strip(",")
        if text.isdigit() and "," not in ids:
            return parse_ids(int(text))
        parts = [part.strip() for part in text.split(",")]
        if text and all(part.isdigit() for part in parts) and len(set(map(int, parts))) == len(parts):
            return [int(part) for part in parts]
    elif isinstance(ids, Sequence) and ids and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        if len(set(ids)) == len(ids):
            return list(ids)
    raise UsageError(f"devices.ids={ids!r} is not allowed: give auto, a count, a list of indices or '0,1'")


def available(accelerator: str) -> int:
    import torch

    if accelerator in ("gpu", "cuda"):
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    if accelerator == "mps":
        return int(torch.backends.mps.is_available())
    return 1


def resolve_accelerator(accelerator: str) -> str:
    if accelerator != "auto":
        return "gpu" if accelerator == "cuda" else accelerator
    for candidate in ("gpu", "mps"):
        if available(candidate):
            return candidate
    return "cpu"


def read_devices(devices_cfg) -> tuple:
    """accelerator, precision, ids and strategy as the config names them, each checked (no torch)."""
    accelerator = devices_cfg.get("accelerator", "auto")
    if accelerator not in ACCELERATORS:
        raise UsageError(f"devices.accelerator={accelerator!r} is not allowed: one of {', '.join(ACCELERATORS)}")
    precision = str(devices_cfg.get("precision", "32-true"))
    if precision not in PRECISIONS:
        raise UsageError(f"devices.precision={precision!r} is not allowed: one of {', '.join(PRECISIONS)}")
    ids = parse_ids(devices_cfg.get("ids", "auto"))
    strategy = devices_cfg.get("strategy", "auto")
    if strategy not in STRATEGIES:
        raise UsageError(f"devices.strategy={strategy!r} is not allowed: one of {', '.join(STRATEGIES)} "
                         "(ddp_spawn also works inside a multirun)")
    return accelerator, precision, ids, strategy


def trainer_arguments(devices_cfg) -> dict:
    """accelerator, devices, precision and strategy for lightning.Trainer."""
    accelerator, precision, ids, strategy = read_devices(devices_cfg)
    accelerator = resolve_accelerator(accelerator)
    if accelerator == "cpu" and precision == "16-mixed":  # Lightning would run bf16-mixed instead
        raise UsageError("devices.precision=16-mixed needs a GPU: on the CPU use bf16-mixed, bf16-true, "
                         "16-true, 32-true or 64-true")
    count = available(accelerator)
    if count == 0:
        raise UsageError(f"devices.accelerator={accelerator}: this machine has no such device; "
                         f"allowed here: auto, cpu")
    if ids == "auto":
        ids = 1
    if accelerator == "cpu" and isinstance(ids, list):
        raise UsageError(f"devices.ids={ids} is not allowed on the CPU: give a count of processes")
    if accelerator != "cpu":
        wanted = ids if isinstance(ids, list) else list(range(ids))
        if max(wanted) >= count:
            raise UsageError(f"devices.ids={devices_cfg.get('ids')!r}: this machine has {count} "
                             f"{accelerator} device(s), indices 0 to {count - 1}")
    if (len(ids) if isinstance(ids, list) else ids) > 1 and strategy == "auto":
        strategy = "ddp_spawn"
    return {"accelerator": accelerator, "devices": ids, "precision": precision, "strategy": strategy}


def check_sampler(sampler: str, devices_cfg) -> None:
    """runtime.sampler=triton needs triton, and a GPU or TRITON_INTERPRET=1 (its interpreter, on the CPU)."""
    if sampler != "triton":
        return
    import importlib.util
    import os

    if importlib.util.find_spec("triton") is None:
        raise UsageError("runtime.sampler=triton needs the triton package (pip install triton); "
                         "allowed here: auto, sort, search")
    accelerator = resolve_accelerator(read_devices(devices_cfg)[0])
    if accelerator != "gpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise UsageError(f"runtime.sampler=triton needs a GPU (devices.accelerator={accelerator} here) or "
                         "TRITON_INTERPRET=1 (slow: for tests); allowed here: auto, sort, search")


def load_dtype(precision: str):
    """The dtype to load weights in: the target dtype for bf16/16-true, else float32."""
    import torch

    return getattr(torch, LOAD_DTYPES.get(precision, "float32"))


def run_dtype(precision: str):
    """The dtype weights and KV cache take while sampling (float32 under mixed precision: an upper
    bound, since autocast keeps activations in 16 bits)."""
    import torch

    return torch.float64 if precision == "64-true" else load_dtype(precision)
