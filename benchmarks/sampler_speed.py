"""Each exact sampler of runtime.sampler timed alone: one step over (batch, vocabulary) logits.

The logits are random (normal, times --scale), every row with its own temperature and nucleus (and
top_k with --top-k), as in generation_speed.py. Each sampler is compiled as the static loop compiles
it (--eager: not); the first call's seconds (the compile, for the first shape) are reported apart.
triton needs CUDA, or TRITON_INTERPRET=1 on the CPU, where it measures the interpreter, not the kernel.

--triton-variants times the triton sampler once per kernel launch shape (triton_select.KernelShape.named),
side by side, one row each with the variant's name and parameters: a name is parts joined by '-' over
the default shape (4-bit digits, blocks of 1,024, one program per row, 4 warps): radixN (N-bit digits),
blockN, persistentN (N programs per SM, each looping over rows), warpsN; 'default' is the default.

    python benchmarks/sampler_speed.py --device cpu --batches 4,64 --repeats 3
    python benchmarks/sampler_speed.py --device cuda --batches 4,64,512,2048
    python benchmarks/sampler_speed.py --device cuda --samplers triton --triton-variants default,radix2,persistent1

Prints one table and writes it as JSON (--json, default benchmarks/results-samplers-<device>.json),
rewritten after each row so that a run cut short keeps what it measured; exits 1 if any row failed.
"""
import argparse
import dataclasses
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gpt2_sweep  # noqa: E402,F401 - sets MKL_CBWR before torch runs MKL
import torch  # noqa: E402

from benchmarks.common import DTYPES, RowLog, best_time, card_name  # noqa: E402
from gpt2_sweep.decoding.samplers import SAMPLERS, compiled_sampler, sampler_step  # noqa: E402
from gpt2_sweep.decoding.sampling import RowSettings  # noqa: E402
from gpt2_sweep.decoding.triton_select import KernelShape  # noqa: E402 - imports triton only when it runs


def row_settings(batch: int, top_k: bool, device: str) -> RowSettings:
    top_ks = torch.arange(batch) % 100 if top_k else None  # 0 (off) to 99
    return RowSettings(torch.linspace(1e-6, 1.2, batch), torch.linspace(1e-6, 1.0, batch), top_ks).to(device)


def timed_samplers(names: str, variants: dict, eager: bool):
    """(the row's label fields, the step to time) of each sampler, triton once per variant (name: shape)."""
    for name in names.split(","):
        if name != "triton" or not variants:
            yield {"sampler": name}, sampler_step(name) if eager else compiled_sampler(name)
            continue
        from gpt2_sweep.decoding.triton_select import triton_step

        for variant, shape in variants.items():
            step = functools.partial(triton_step, shape=shape)
            torch._dynamo.reset()  # each variant compiles afresh: all share triton_step's code, and its recompile limit
            yield ({"sampler": name, "variant": variant, "kernel": dataclasses.asdict(shape)},
                   step if eager else torch.compile(step, fullgraph=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", default="4,64")
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="the logits' dtype")
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--triton-variants", default="", help="kernel launch shapes of the triton sampler, "
                        "e.g. default,radix2,persistent1 (see above); none: the default alone, as the loop runs it")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scale", type=float, default=3.0, help="the logits' standard deviation")
    parser.add_argument("--top-k", action="store_true", help="rows with top_k on, as a third select")
    parser.add_argument("--eager", action="store_true", help="time the samplers uncompiled")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    try:
        variants = {name: KernelShape.named(name) for name in args.triton_variants.split(",") if name}
    except ValueError as error:
        parser.error(f"--triton-variants: {error}")
    device, generator = args.device, torch.Generator().manual_seed(0)
    card, mode = card_name(device), "eager" if args.eager else "compiled"
    output = args.json or Path(__file__).with_name(f"results-samplers-{device}.json")
    log = RowLog(output, {"card": card, "torch": torch.__version__, "dtype": args.dtype, "vocab": args.vocab,
                          "mode": mode, "top_k": args.top_k})
    for label, step in timed_samplers(args.samplers, variants, args.eager):
        for batch in (int(b) for b in args.batches.split(",")):
            logits = (torch.randn(batch, args.vocab, generator=generator) * args.scale).to(device, DTYPES[args.dtype])
            settings, uniforms = row_settings(batch, args.top_k, device), torch.rand(batch, generator=generator).to(device)
            try:
                seconds, first = best_time(lambda: step(logits, settings, uniforms), device, args.repeats)
                row = {**label, "batch": batch, "ms_per_step": round(seconds * 1e3, 3), "first_call_s": round(first, 2)}
            except Exception as error:  # noqa: BLE001 - a sampler that fails is reported, not hidden
                row = {**label, "batch": batch, "error": f"{type(error).__name__}: {str(error)[:200]}"}
            log.add(row)
    rows = log.rows
    print(f"\n{card}, torch {torch.__version__}, {args.dtype} logits, vocabulary {args.vocab}, {mode}\n")
    print(f"{'sampler':<34} {'batch':>6} {'ms/step':>10} {'first call s':>13}")
    for row in rows:
        name = row["sampler"] + (f" {row['variant']}" if "variant" in row else "")
        print(f"{name:<34} {row['batch']:>6} {row.get('ms_per_step', row.get('error', '')):>10} "
              f"{row.get('first_call_s', ''):>13}")
    print(f"\nwritten to {output}")
    sys.exit(1 if any("error" in row for row in rows) else 0)


if __name__ == "__main__":
    main()
