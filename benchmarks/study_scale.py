"""How a study over a prompt set scales (issue 17, item 8): one run of P prompts x S settings against a
one-prompt run of P*S samples (tokens/s) and against the multirun of one job per prompt (end to end);
with --memory, the peak memory of a 40,000-sample study.

    python benchmarks/study_scale.py [--prompts 200] [--jobs 20] [--new 32] [--settings 8]
    python benchmarks/study_scale.py --memory [--memory-samples 40000] [--memory-new 4]
    python benchmarks/study_scale.py --quick [--memory]     # a smoke run at tiny sizes

Every run is a real `python run.py` process on SmolLM2 (model=smollm2, or --model), timed from its
start to its exit (imports, model load and artifact included), its peak resident memory read from
wait4 (the process and any children it waited for). The runs:

- start-up: one prompt, one sample, one new token (after an unmeasured warm-up run): the fixed cost
  of a process, subtracted in the "decode tokens/s" column;
- (a) study: P prompts (a .txt file written to --out, mixed lengths) x S temperatures
  (sampler=temperature num_samples=S), max_new_tokens=--new, in one run;
- (b) one prompt: the first prompt with P*S temperatures, the same tokens in all;
- (c) multirun: one job per prompt for the first K prompts (`python run.py -m ... prompt_set.limit=1
  prompt_set.offset=0,...,K-1`, its summary included, as a user would run it), scaled to P by P/K;
- --memory: a study of --memory-samples samples (prompts x --memory-settings temperatures x
  --memory-draws draws: 100 x 200 x 2 by default) of --memory-new (4) tokens with
  batch_size=--memory-batch-size (512), its peak RSS against 4 GB. Many settings per prompt keep it
  short while a study decodes one (prompt, draw) group per call: the samples' count is what a run
  holds in memory, whichever way it is made up.

Targets (issue 17): (a)'s tokens/s at least 0.8x (b)'s; (a) at least 2x faster end to end than (c)
scaled; the 40,000-sample run under 4 GB. Writes benchmarks/results-study-scale.json (--json; --quick
writes into --out), merging with the runs a file there already holds, and prints a table.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results-study-scale.json"
MEMORY_LIMIT_MB = 4096
WORDS = ("the", "old", "river", "city", "a", "quiet", "morning", "when", "she", "found", "letter", "under",
         "door", "and", "they", "walked", "toward", "hills", "beyond", "market", "of", "light", "his", "last")


def prompt_lines(count: int) -> list[str]:
    """count prompts of 3 to 24 words (seeded), no commas or quotes: mixed lengths, as a real set has."""
    generator = random.Random(0)
    return [" ".join(generator.choice(WORDS) for _ in range(generator.randint(3, 24))).capitalize()
            for _ in range(count)]


def write_prompts(path: Path, count: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(prompt_lines(count)) + "\n")
    return path


def model_override(model: str) -> str:
    """A preset name (smollm2, gpt2) or a save_pretrained directory."""
    return f"model.name={model}" if Path(model).is_dir() else f"model={model}"


def timed(name: str, arguments: list[str], log_dir: Path) -> dict:
    """Run `python run.py ARGUMENTS`; its wall-clock seconds and peak RSS (MB). Its output goes to
    LOG_DIR/NAME.log; a failure ends the benchmark with the log's path."""
    log_path = log_dir / f"{name}.log"
    command = [sys.executable, "run.py", *arguments]
    print(f"[{datetime.now():%H:%M:%S}] {name}: {' '.join(command[1:])}", flush=True)
    with log_path.open("w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{name} failed (exit code {process.returncode}): see {log_path}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def common(args, max_new_tokens: int) -> list[str]:
    return [model_override(args.model), f"max_new_tokens={max_new_tokens}", "sampler=temperature",
            "print_samples=0", "overwrite=true", *args.extra]


def speed_runs(args, out: Path) -> dict:
    prompts_file = write_prompts(out / "prompts.txt", args.prompts)
    first_prompt = prompt_lines(1)[0]
    samples = args.prompts * args.settings
    tokens = samples * args.new
    runs = {}
    # The first run converts the bundled GGUF if its cache is missing and fills the page cache.
    timed("warm-up", [*common(args, 1), "num_samples=1", f"prompt='{first_prompt}'",
                      f"hydra.run.dir={out / 'warm-up'}"], out)
    runs["start-up"] = {"samples": 1, "tokens": 1, **timed(
        "start-up", [*common(args, 1), "num_samples=1", f"prompt='{first_prompt}'",
                     f"hydra.run.dir={out / 'start-up'}"], out)}
    runs["a_study"] = {"samples": samples, "tokens": tokens, **timed(
        "a_study", [*common(args, args.new), f"prompts={prompts_file}", f"num_samples={args.settings}",
                    f"hydra.run.dir={out / 'a_study'}"], out)}
    runs["b_one_prompt"] = {"samples": samples, "tokens": tokens, **timed(
        "b_one_prompt", [*common(args, args.new), f"prompt='{first_prompt}'", f"num_samples={samples}",
                         f"hydra.run.dir={out / 'b_one_prompt'}"], out)}
    offsets = ",".join(str(offset) for offset in range(args.jobs))
    runs["c_multirun"] = {"jobs": args.jobs, "samples": args.jobs * args.settings,
                          "tokens": args.jobs * args.settings * args.new, **timed(
        "c_multirun", ["-m", *common(args, args.new), f"prompts={prompts_file}", "prompt_set.limit=1",
                       f"prompt_set.offset={offsets}", f"num_samples={args.settings}",
                       f"hydra.sweep.dir={out / 'c_multirun'}"], out)}
    startup = runs["start-up"]["seconds"]
    for run in runs.values():
        run["tokens_per_s"] = round(run["tokens"] / run["seconds"], 2)
        decoding = run["seconds"] - startup * run.get("jobs", 1)
        run["decode_tokens_per_s"] = round(run["tokens"] / decoding, 2) if decoding > 0 else None
    scale = args.prompts / args.jobs
    runs["c_multirun_scaled"] = {"jobs": args.prompts, "samples": samples, "tokens": tokens,
                                 "seconds": round(runs["c_multirun"]["seconds"] * scale, 1),
                                 "scaled_from_jobs": args.jobs}
    runs["c_multirun_scaled"]["tokens_per_s"] = round(tokens / runs["c_multirun_scaled"]["seconds"], 2)
    return runs


def memory_run(args, out: Path) -> dict:
    per_prompt = args.memory_settings * args.memory_draws
    prompts = math.ceil(args.memory_samples / per_prompt)
    prompts_file = write_prompts(out / "memory-prompts.txt", prompts)
    run = timed("memory", [*common(args, args.memory_new), f"prompts={prompts_file}",
                           f"num_samples={args.memory_settings}", f"draws={args.memory_draws}",
                           f"batch_size={args.memory_batch_size}", f"hydra.run.dir={out / 'memory'}"], out)
    return {"model": args.model, "prompts": prompts, "settings": args.memory_settings, "draws": args.memory_draws,
            "samples": prompts * per_prompt, "new_tokens": args.memory_new,
            "batch_size": args.memory_batch_size, **run, "limit_mb": MEMORY_LIMIT_MB,
            "under_limit": run["peak_rss_mb"] < MEMORY_LIMIT_MB}


def ratios(runs: dict) -> dict:
    study, one_prompt, scaled = runs["a_study"], runs["b_one_prompt"], runs["c_multirun_scaled"]
    result = {"a_over_b_tokens_per_s": round(study["tokens_per_s"] / one_prompt["tokens_per_s"], 2),
              "c_scaled_over_a_seconds": round(scaled["seconds"] / study["seconds"], 2)}
    if study["decode_tokens_per_s"] and one_prompt["decode_tokens_per_s"]:
        result["a_over_b_decode_tokens_per_s"] = round(study["decode_tokens_per_s"] / one_prompt["decode_tokens_per_s"], 2)
    return result


def print_table(results: dict) -> None:
    def cell(value, width):
        return f"{'-' if value is None else value:>{width}}"
    runs = results.get("runs") or {}
    if runs:
        print(f"\n{'run':<20}{'samples':>9}{'tokens':>9}{'seconds':>10}{'tokens/s':>10}{'decode tok/s':>14}"
              f"{'peak RSS MB':>13}")
        for name, run in runs.items():
            print(f"{name:<20}{cell(run.get('samples'), 9)}{cell(run.get('tokens'), 9)}{cell(run['seconds'], 10)}"
                  f"{cell(run.get('tokens_per_s'), 10)}{cell(run.get('decode_tokens_per_s'), 14)}"
                  f"{cell(run.get('peak_rss_mb'), 13)}")
        shown = results["ratios"]
        print(f"(a) / (b) tokens/s: {shown['a_over_b_tokens_per_s']} (target >= 0.8)"
              + (f"; start-up subtracted: {shown['a_over_b_decode_tokens_per_s']}"
                 if "a_over_b_decode_tokens_per_s" in shown else ""))
        print(f"(c) scaled / (a) seconds: {shown['c_scaled_over_a_seconds']} (target >= 2)")
    memory = results.get("memory")
    if memory:
        print(f"memory: {memory['samples']} samples x {memory['new_tokens']} new tokens (batch_size="
              f"{memory['batch_size']}): peak RSS {memory['peak_rss_mb']} MB in {memory['seconds']} s "
              f"(target < {MEMORY_LIMIT_MB} MB: {'yes' if memory['under_limit'] else 'NO'})")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "load_average": [round(load, 2) for load in os.getloadavg()]}


def commit() -> str:
    described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True)
    return described.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=200, help="P: prompts of the study (a)")
    parser.add_argument("--jobs", type=int, default=20, help="K: jobs of the multirun (c), scaled to P")
    parser.add_argument("--new", type=int, default=32, help="new tokens per sample")
    parser.add_argument("--settings", type=int, default=8, help="S: temperatures per prompt")
    parser.add_argument("--model", default="smollm2", help="a model preset or a save_pretrained directory")
    parser.add_argument("--memory", action="store_true", help="only the memory run (separate: it is long)")
    parser.add_argument("--memory-samples", type=int, default=40_000)
    parser.add_argument("--memory-settings", type=int, default=200)
    parser.add_argument("--memory-draws", type=int, default=2)
    parser.add_argument("--memory-new", type=int, default=4)
    parser.add_argument("--memory-batch-size", type=int, default=512)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 4 prompts, 2 jobs, 4 new tokens, 2 settings (memory: 8 prompts x 4 x 2, 2 tokens)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/study_scale"), help="run dirs and logs")
    parser.add_argument("--json", type=Path, help=f"results file (default {RESULTS.relative_to(REPO)}; "
                                                  "--quick: OUT/results.json)")
    parser.add_argument("extra", nargs="*", help="more run.py overrides for every run (e.g. devices=cpu)")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.jobs, args.new, args.settings = 4, 2, 4, 2
        args.memory_samples, args.memory_settings, args.memory_draws, args.memory_new = 64, 4, 2, 2
        args.memory_batch_size = 16
    args.jobs = min(args.jobs, args.prompts)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    path = args.json or (out / "results.json" if args.quick else RESULTS)
    results = json.loads(path.read_text()) if path.exists() else {}
    measured = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit(),
                "machine_before": machine()}
    if args.memory:
        results["memory"] = {**measured, **memory_run(args, out)}
    else:
        runs = speed_runs(args, out)
        results.update({**measured, "model": args.model, "prompts": args.prompts, "jobs": args.jobs,
                        "new_tokens": args.new, "settings": args.settings, "extra": args.extra,
                        "runs": runs, "ratios": ratios(runs)})
    results["machine_after"] = machine()
    path.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"Results written to {path}")


if __name__ == "__main__":
    main()
