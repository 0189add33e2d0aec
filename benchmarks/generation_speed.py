"""Tokens per second of the runner's generation loop next to transformers' generate().

Same model, batch, length, dtype and device for every row; both sweeps on, so every sample has its
own temperature and nucleus. The default model is GPT-2 124M's shape with random weights, as in
../shared/anchors: generate()'s speed does not depend on the weights, but the runner's does a little,
since its sampler sorts only the top 1,024 candidates where they cover the mass it needs, and the
near-uniform distributions of random weights rarely let them (the worst case). --model-dir DIR
measures a trained model (e.g. the bundled SmolLM2, as converted by the runner).

    python benchmarks/generation_speed.py --device cpu --batches 4,64 --new 50 --dtype fp32
    python benchmarks/generation_speed.py --device cuda --batches 4,64,512,2048 --new 256 --dtype bf16
    python benchmarks/generation_speed.py --device cuda --batches 4,64,512,2048 --samplers sort,search,triton

--samplers adds a row per sampler of runtime.sampler (runner_sort, ...): the runner's static loop with
that sampler, compiled unless --compile false (auto counts as true for these rows, the CPU included).

Prints one table and writes it as JSON (--json, default benchmarks/results-<device>.json), rewritten
after each row so that a run cut short keeps what it measured; exits 1 if any row failed.
"""
import argparse
import copy
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gpt2_sweep  # noqa: E402,F401 - sets MKL_CBWR before torch runs MKL
import torch  # noqa: E402

from benchmarks.common import (DTYPES, RowLog, benchmark_model, best_time, card_name, start_token,  # noqa: E402
                               synchronize)
from gpt2_sweep.decoding.engines import choose_engine, decode, decoder_for  # noqa: E402
from gpt2_sweep.decoding.prompts import one_prompt  # noqa: E402
from gpt2_sweep.decoding.sampling import RowSettings, shared_uniforms  # noqa: E402


def attention_kernels(run, device: str) -> list[str]:
    """The attention kernels one call ran, by name (which of SDPA's backends, or none of them)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profile:
        run()
        synchronize(device)
    pattern = re.compile(r"fmha|flash|attention|cudnn|sdpa|efficient", re.IGNORECASE)
    return sorted({event.name[:120] for event in profile.events() if pattern.search(event.name)})


def peak_memory(device: str) -> int | None:
    return torch.cuda.max_memory_allocated() if device == "cuda" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", default="4,64")
    parser.add_argument("--new", type=int, default=50, help="new tokens per sample")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--peers", default="runner,runner_invariant,hf_generate,hf_generate_static")
    parser.add_argument("--model-dir", help="a save_pretrained directory instead of random GPT-2 weights")
    parser.add_argument("--compile", default="auto", choices=["auto", "true", "false"],
                        help="the runner's runtime.compile (auto: compiled with CUDA graphs on CUDA)")
    parser.add_argument("--samplers", default="", help="comma-separated runtime.sampler values: a row each")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device, dtype = args.device, DTYPES[args.dtype]
    model = benchmark_model(args.model_dir, device, dtype)
    start = start_token(model)
    model.generation_config.pad_token_id = start
    runner_model = copy.deepcopy(model)  # its own copy: the CPU loop prepares the model for decoding
    compile_setting = {"auto": "auto", "true": True, "false": False}[args.compile]
    engine = choose_engine(runner_model, compile_setting)
    invariant = choose_engine(runner_model, compile_setting, batch_invariant=True)
    samplers = [name for name in args.samplers.split(",") if name]
    static = compile_setting if compile_setting is False else True
    by_sampler = {name: choose_engine(runner_model, static, sampler=name) for name in samplers}
    print(f"runner engine: {engine.describe()}", flush=True)
    card = card_name(device)
    model_name = args.model_dir or "GPT-2 124M shape, random weights"
    output = args.json or Path(__file__).with_name(f"results-{device}.json")
    log = RowLog(output, {"model": model_name, "card": card, "torch": torch.__version__, "dtype": args.dtype,
                          "new_tokens": args.new, "engine": engine.describe(), "engine_invariant": invariant.describe(),
                          "engines_by_sampler": {name: e.describe() for name, e in by_sampler.items()}})
    rows = log.rows
    batches = [int(b) for b in args.batches.split(",")]
    for batch in batches:
        ids = torch.full((batch, 1), start, device=device)
        temperatures = torch.linspace(1e-6, 1.2, batch)
        nuclei = torch.linspace(1e-6, 1.0, batch)
        settings = RowSettings(temperatures, nuclei)
        prompts, uniforms = one_prompt([start], shared_uniforms(0, args.new), batch, args.new)
        # Kept across the repeats, as a run keeps them across its batches: state, compiled step, CUDA graphs.
        decoder, invariant_decoder = decoder_for(engine, runner_model), decoder_for(invariant, runner_model)
        runs = {
            "runner": lambda: decode(engine, runner_model, prompts, settings, uniforms, args.new, decoder=decoder),
            "runner_invariant": lambda: decode(invariant, runner_model, prompts, settings, uniforms, args.new,
                                               decoder=invariant_decoder),
            "hf_generate": lambda: model.generate(ids, do_sample=True, temperature=0.8, top_p=0.9, top_k=0,
                                                  max_new_tokens=args.new, min_new_tokens=args.new),
            "hf_generate_static": lambda: model.generate(ids, do_sample=True, temperature=0.8, top_p=0.9,
                                                         top_k=0, max_new_tokens=args.new,
                                                         min_new_tokens=args.new, cache_implementation="static"),
        }
        for name, sampler_engine in by_sampler.items():
            runs[f"runner_{name}"] = (lambda e: lambda: decode(e, runner_model, prompts, settings, uniforms, args.new))(
                sampler_engine)
        for peer in [*args.peers.split(","), *(f"runner_{name}" for name in samplers)]:
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            try:
                seconds, first = best_time(runs[peer], device, args.repeats)
                row = {"peer": peer, "batch": batch, "tokens_per_s": round(batch * args.new / seconds, 1),
                       "seconds": round(seconds, 4), "first_call_s": round(first, 2),
                       "peak_memory_bytes": peak_memory(device)}
                if peer == "runner" and batch == batches[0]:
                    row["attention_kernels"] = attention_kernels(runs[peer], device)
            except Exception as error:  # noqa: BLE001 - a peer that fails is reported, not hidden
                row = {"peer": peer, "batch": batch, "error": f"{type(error).__name__}: {str(error)[:200]}"}
            log.add(row)
    print(f"\n{model_name}; {card}, torch {torch.__version__}, {args.dtype}, {args.new} new tokens from one start token\n")
    print(f"{'peer':<20} {'batch':>6} {'tok/s':>10} {'x generate()':>13} {'peak MiB':>9}")
    for row in rows:
        base = next((r for r in rows if r["peer"] == "hf_generate" and r["batch"] == row["batch"]), {})
        ratio = row.get("tokens_per_s", 0) / base["tokens_per_s"] if base.get("tokens_per_s") else float("nan")
        peak = row.get("peak_memory_bytes")
        print(f"{row['peer']:<20} {row['batch']:>6} {row.get('tokens_per_s', row.get('error', '')):>10} "
              f"{ratio:>13.2f} {peak / 2**20 if peak else float('nan'):>9.0f}")
    print(f"\nwritten to {output}")
    sys.exit(1 if any("error" in row for row in rows) else 0)


if __name__ == "__main__":
    main()
