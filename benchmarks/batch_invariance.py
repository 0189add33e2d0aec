"""How many samples come out identical when the same settings are drawn at other batch sizes.

The same --samples settings (temperature 0 to 1.5 against nucleus 1 to 0.05), --new tokens from one
start token, drawn at each of --batches, with runtime.batch_invariant off and on; every batch size is
compared with the first. GPT-2 124M's shape with random weights (near-flat distributions: the worst
case), or --model-dir's model, and the same with its output head scaled by 8 (peaked, more like a
trained model).

    python benchmarks/batch_invariance.py --device cuda --dtype bf16 --samples 1024 --batches 1024,64,16
    python benchmarks/batch_invariance.py --device cpu --dtype fp32 --samples 16 --batches 16,4,1 --new 8

Prints a table, writes JSON (--json; rewritten after each row, so that a run cut short keeps its
rows) and exits 1 if the mode left any sample different.
"""
import argparse
import copy
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gpt2_sweep  # noqa: E402,F401 - sets MKL_CBWR before torch runs MKL
import torch  # noqa: E402

from benchmarks.common import DTYPES, RowLog, benchmark_model, start_token  # noqa: E402
from gpt2_sweep.decoding.engines import choose_engine, decode, decoder_for  # noqa: E402
from gpt2_sweep.decoding.prompts import one_prompt  # noqa: E402
from gpt2_sweep.decoding.sampling import RowSettings, shared_uniforms  # noqa: E402


def drawn(engine, model, samples, batch, new):
    temperatures = torch.linspace(0.0, 1.5, samples)
    nuclei = torch.linspace(0.05, 1.0, samples).flip(0)
    prompts, uniforms = one_prompt([start_token(model)], shared_uniforms(0, new), samples, new)
    settings = RowSettings(temperatures, nuclei)
    decoder = decoder_for(engine, model)  # one for the run's batches, as the runner keeps it
    return torch.cat([decode(engine, model, prompts.rows(block), settings.rows(block), uniforms[block], new,
                             decoder=decoder).tokens.cpu()
                      for block in (slice(first, first + batch) for first in range(0, samples, batch))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bf16" if torch.cuda.is_available() else "fp32", choices=sorted(DTYPES))
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batches", default="1024,64,16")
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--model-dir", help="a save_pretrained directory instead of random GPT-2 weights")
    parser.add_argument("--compile", default="auto", choices=["auto", "true", "false"],
                        help="runtime.compile (auto: the static loop compiled on CUDA; true on the CPU: the "
                             "same loop there, as a smoke run of what CUDA runs)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    compile_setting = {"auto": "auto", "true": True, "false": False}[args.compile]
    flat = benchmark_model(args.model_dir, args.device, DTYPES[args.dtype])
    peaked = copy.deepcopy(flat)
    peaked.lm_head.weight = torch.nn.Parameter(peaked.lm_head.weight.detach() * 8)  # untied: the head only
    batches = [int(b) for b in args.batches.split(",")]
    card = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.machine()} CPU"
    output = args.json or Path(__file__).with_name(f"batch-invariance-{args.device}.json")
    log = RowLog(output, {"card": card, "torch": torch.__version__, "dtype": args.dtype, "new_tokens": args.new})
    for name, model in (("random weights", flat), ("output head x8", peaked)):
        for invariant in (False, True):
            engine = choose_engine(model, compile_setting, batch_invariant=invariant)
            tokens = [drawn(engine, model, args.samples, batch, args.new) for batch in batches]
            for batch, other in zip(batches[1:], tokens[1:]):
                identical = int((other == tokens[0]).all(dim=-1).sum())
                row = {"model": name, "batch_invariant": invariant, "batch": batch, "against_batch": batches[0],
                       "identical": identical, "samples": args.samples, "engine": engine.describe()}
                log.add(row)
    rows = log.rows
    print(f"\n{card}, torch {torch.__version__}, {args.dtype}, {args.new} new tokens\n")
    print(f"{'model':<16} {'mode':>6} {'batch':>6} {'identical':>14}")
    for row in rows:
        print(f"{row['model']:<16} {'on' if row['batch_invariant'] else 'off':>6} {row['batch']:>6} "
              f"{row['identical']:>6} / {row['samples']:<6} vs batch {row['against_batch']}")
    print(f"\nwritten to {output}")
    sys.exit(1 if any(row["batch_invariant"] and row["identical"] < row["samples"] for row in rows) else 0)


if __name__ == "__main__":
    main()
