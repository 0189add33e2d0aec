"""A whole `python run.py` sweep (start-up and model load included) next to a plain script that
loads the same model and calls transformers' generate() for the same samples, one call per sample
(each has its own temperature and nucleus value, which generate() takes per call, not per row).

    python benchmarks/whole_run.py --model-dir DIR --samples 4,64 --max-length 50

Without --model-dir the bundled SmolLM2 is used (converted once by the runner, then read from its
cache). Prints wall-clock seconds of each, best of --repeats, and writes benchmarks/results-whole-run.json.
"""
import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLAIN = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model_dir, samples, max_length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
ids = torch.tensor([[tokenizer.bos_token_id or tokenizer.eos_token_id]])
for i in range(samples):
    t = 1.2 * i / max(samples - 1, 1)
    p = 1.0 * i / max(samples - 1, 1)
    kwargs = dict(do_sample=True, temperature=t, top_p=p, top_k=0) if t > 0 and p > 0 else dict(do_sample=False)
    out = model.generate(ids, max_length=max_length, min_length=max_length, **kwargs)
    print(tokenizer.decode(out[0], skip_special_tokens=True))
"""


def seconds(command: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def smollm2_dir() -> str:
    sys.path.insert(0, str(REPO))
    from omegaconf import OmegaConf

    from gpt2_sweep.runner.loading import converted_gguf_dir
    return str(converted_gguf_dir(OmegaConf.load(REPO / "conf" / "model" / "smollm2.yaml")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir")
    parser.add_argument("--samples", default="4,64")
    parser.add_argument("--max-length", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model_dir = args.model_dir or smollm2_dir()
    rows = []
    for samples in (int(n) for n in args.samples.split(",")):
        runner = seconds([sys.executable, "run.py", f"model.name={model_dir}", "sampler=both",
                          f"num_samples={samples}", f"max_length={args.max_length}",
                          "hydra.run.dir=/tmp/gpt2_sweep-whole-run", "overwrite=true"], args.repeats)
        plain = seconds([sys.executable, "-c", PLAIN, model_dir, str(samples), str(args.max_length)],
                        args.repeats)
        rows.append({"samples": samples, "max_length": args.max_length, "run_py_s": round(runner, 2),
                     "plain_generate_s": round(plain, 2), "ratio": round(plain / runner, 2)})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'samples':>8} {'run.py s':>9} {'plain generate() s':>19} {'plain / run.py':>15}")
    for row in rows:
        print(f"{row['samples']:>8} {row['run_py_s']:>9} {row['plain_generate_s']:>19} {row['ratio']:>15}")
    (REPO / "benchmarks" / "results-whole-run.json").write_text(json.dumps(
        {"model_dir": model_dir, "date": datetime.now(timezone.utc).isoformat(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
