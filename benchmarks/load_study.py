"""How long gpt2_sweep.load takes on a study's artifact of 40,000 samples x 64 new tokens, per-token
data included: a synthetic artifact in the runner's format (samples.parquet beside samples.json).

    python benchmarks/load_study.py [--samples 40000] [--tokens 64] [--dir /tmp/load_study]

Prints the seconds of the write, of load() in this process and of a fresh process importing the
package and loading (imports included).
"""
import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpt2_sweep.artifact import ARTIFACT_NAME, SAMPLES_TABLE_NAME, write_json_atomic, write_table_atomic  # noqa: E402

WORDS = [" the", " fox", " jumps", " over", " lazy", " dog", ",", ".", " and", " a"]


def synthetic_records(samples: int, tokens: int, settings: int = 8, draws: int = 2) -> list[dict]:
    generator = random.Random(0)
    records = []
    for sample in range(samples):
        group, setting = divmod(sample, settings)
        strings = [generator.choice(WORDS) for _ in range(tokens)]
        text = "".join(strings)
        records.append({
            "nucleus": 1.0, "temperature": round(0.2 * setting, 12),
            "prompt_index": group // draws, "draw": group % draws,
            "text": "A prompt of ten tokens or so" + text, "continuation": text,
            "tokens": [generator.randrange(50257) for _ in range(10 + tokens)], "prompt_tokens": 10,
            "metrics": {"generated_tokens": tokens, "logprob": -generator.random() * 100,
                        "perplexity": 1 + generator.random() * 30, "mean_entropy": generator.random() * 3,
                        "mean_nucleus_size": generator.random() * 1000, "distinct_1": generator.random(),
                        "distinct_2": generator.random(), "distinct_3": generator.random(),
                        "repetition": generator.random(), "diverges_from": None if setting == 0 else setting},
            "token_logprobs": [float(f"{-generator.random() * 8:.7g}") for _ in range(tokens)],
            "token_strings": strings,
        })
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40_000)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/load_study"))
    args = parser.parse_args()
    records = synthetic_records(args.samples, args.tokens)
    prompts = sorted({record["prompt_index"] for record in records})
    start = time.perf_counter()
    write_table_atomic(args.dir / SAMPLES_TABLE_NAME, [records])
    write_json_atomic(args.dir / ARTIFACT_NAME, {
        "metadata": {"model_name": "synthetic", "seed": 0, "prompt": None, "p_values": None, "draws": 2,
                     "max_new_tokens": args.tokens, "samples_file": SAMPLES_TABLE_NAME, "num_samples": len(records),
                     "prompts": [{"index": i, "text": "A prompt of ten tokens or so", "reference": "A reference."}
                                 for i in prompts]},
        "texts": None})
    print(f"write: {time.perf_counter() - start:.2f} s ({(args.dir / SAMPLES_TABLE_NAME).stat().st_size / 1e6:.0f} MB)")
    import gpt2_sweep

    start = time.perf_counter()
    table = gpt2_sweep.load(args.dir)
    print(f"load, in this process: {time.perf_counter() - start:.2f} s for {len(table)} rows x {table.shape[1]} columns")
    script = f"import time; s = time.perf_counter(); import gpt2_sweep; gpt2_sweep.load({str(args.dir)!r}); " \
             "print(f'{time.perf_counter() - s:.2f}')"
    root = Path(__file__).resolve().parent.parent
    seconds = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True).stdout
    print(f"load, a fresh process, imports included: {seconds.strip()} s")


if __name__ == "__main__":
    main()
