"""Peak memory of a study run on the tests' tiny model against its number of samples: each size in a
fresh process (resource.getrusage's peak RSS), so that the numbers show whether memory grows with it.

    python benchmarks/shard_memory.py 2000 8000
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = 8
NEW_TOKENS = 32


def one_run(samples: int, work: Path) -> dict:
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from conftest import compose_config, tiny_gpt2, train_tokenizer  # noqa: PLC0415

    from gpt2_sweep.runner.sweep import run_sweep  # noqa: PLC0415

    tokenizer = train_tokenizer()
    model_dir = work / "model"
    tiny_gpt2(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    prompts = work / "prompts.txt"
    prompts.write_text("".join(f"Prompt number {i} is" + "\n" for i in range(samples // SETTINGS)))
    cfg = compose_config(f"model.name={model_dir}", "sampler=temperature", f"num_samples={SETTINGS}",
                         f"prompts={prompts}", f"max_new_tokens={NEW_TOKENS}", "batch_size=256", "print_samples=0")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    run_sweep(cfg, work / "run")
    return {"samples": samples, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb_before_run": round(before / 1024), "peak_rss_mb": round(resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024),
            "parquet_mb": round((work / "run" / "samples.parquet").stat().st_size / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=int, nargs="+")
    parser.add_argument("--one", action="store_true", help="run one size in this process")
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as work:
            print(json.dumps(one_run(args.samples[0], Path(work))))
        return
    for samples in args.samples:
        result = subprocess.run([sys.executable, __file__, "--one", str(samples)], capture_output=True, text=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True)
        print(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
