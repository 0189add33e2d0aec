"""What the benchmark scripts share: the model they measure, its start token, timing, the card's name
and the JSON file of their rows."""
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
END_OF_TEXT = 50256


def benchmark_model(model_dir: str | None, device: str, dtype: torch.dtype):
    """A save_pretrained directory's model, or GPT-2 124M's shape with random weights (seed 0)."""
    torch.manual_seed(0)
    if model_dir:
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    return GPT2LMHeadModel(GPT2Config()).to(device, dtype).eval()


def start_token(model) -> int:
    """BOS, or GPT-2's end of text where the model has none."""
    return model.config.bos_token_id if model.config.bos_token_id is not None else END_OF_TEXT


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(run, device: str) -> float:
    """Seconds of one call, the device's queued work before it and its own work included."""
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def best_time(run, device: str, repeats: int) -> tuple[float, float]:
    """(best seconds of `repeats` calls, seconds of the first call: compiles and captures included)."""
    first = timed(run, device)
    return min((timed(run, device) for _ in range(repeats)), default=float("inf")), first


def card_name(device: str) -> str:
    """The GPU's name, or the CPU's architecture and torch's threads."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


class RowLog:
    """A benchmark's rows: each printed as a JSON line when added, and the JSON file (header, date,
    rows) rewritten, so that a run cut short by a time limit keeps what it measured."""

    def __init__(self, output: Path, header: dict):
        self.output, self.header, self.rows = output, header, []

    def add(self, row: dict) -> None:
        print(json.dumps(row), flush=True)
        self.rows.append(row)
        self.output.write_text(json.dumps({**self.header, "date": datetime.now(timezone.utc).isoformat(),
                                           "rows": self.rows}, indent=2) + "\n")
