"""Part (a) of the GPU check: `python run.py` end to end, as users run it, under the precisions GPU
users pick, with runtime.compile on and off, DDP with one rank, and a study of mixed-length prompts.

    python benchmarks/gpu_runs.py --group gpt2|llama [--tokenizer-dir DIR] [--json FILE]
    python benchmarks/gpu_runs.py --group gpt2 --quick     # the CPU smoke run

Each group builds one model with random weights (seed 0, save_pretrained into a temporary dir, with
the tokenizer of --tokenizer-dir, by default the bundled SmolLM2's; its tokenizer.json alone fits in a
device call, its weights do not):
- gpt2: GPT-2 124M's shape (vocab cut to the tokenizer's); bf16-true and bf16-mixed compiled, and
  bf16-true uncompiled (the eager static loop), for the comparison;
- llama: SmolLM2-135M's shape (grouped-query attention, RMSNorm, rotary) with 6 of its 30 layers (a
  30-layer step graph has three times GPT-2's nodes and compiles for minutes: the part checks the
  precisions and the paths, which the depth does not change), compiled: bf16-true, 16-mixed, DDP with
  one GPU rank, and a study (prompts of mixed lengths x settings x draws).
Runs of 512 samples x 64 new tokens in batches of 200 (the last partial): a part ends within 4
minutes, compiles included.
Every run's exit code, seconds, the artifact's dtype, compute_dtype and engine, and a stderr tail
on failure go to the JSON; runs of one precision with compile on and off are compared sample by
sample (a bf16 pick may differ where u falls near a boundary: the count is reported, not asserted).
With --quick every run goes to the CPU at tiny sizes (16-mixed, which needs CUDA, is left out).
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.whole_run import smollm2_dir  # noqa: E402 - the bundled SmolLM2, converted once by the runner
from gpt2_sweep import load  # noqa: E402

PASSAGES = [
    "In the beginning",
    "The quick brown fox jumps over the lazy dog while the farmer sleeps in the afternoon sun",
    "She said",
    "A long time ago, in a small village by the sea, there lived an old fisherman and his wife",
    "Why",
    "Results are written per batch as they are made, and memory stays bounded",
]


def model_dir(group: str, tokenizer_dir: Path, root: Path, quick: bool) -> Path:
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    vocab = len(tokenizer)
    torch.manual_seed(0)
    if group == "gpt2":
        config = GPT2Config(vocab_size=vocab, bos_token_id=tokenizer.bos_token_id or 0,
                            eos_token_id=tokenizer.eos_token_id or 0)
        if quick:
            config.n_layer, config.n_embd, config.n_head = 2, 64, 2
        model = GPT2LMHeadModel(config)
    else:
        config = LlamaConfig(vocab_size=vocab, hidden_size=576, intermediate_size=1536, num_hidden_layers=6,
                             num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                             rope_theta=100000.0, tie_word_embeddings=True, rms_norm_eps=1e-5,
                             bos_token_id=tokenizer.bos_token_id or 0, eos_token_id=tokenizer.eos_token_id or 0)
        if quick:
            config.num_hidden_layers, config.hidden_size, config.intermediate_size = 2, 72, 128
        model = LlamaForCausalLM(config)
    directory = root / group
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def planned_runs(group: str, quick: bool) -> list[tuple[str, list[str]]]:
    """Each run draws its samples in batches of which the last is partial: the decode state, compiled
    step and CUDA graphs are kept from batch to batch, the last batch padded to the full size."""
    device = ["devices=cpu"] if quick else ["devices=gpu"]
    size = (["num_samples=8", "max_new_tokens=8", "batch_size=3"] if quick
            else ["num_samples=512", "max_new_tokens=64", "batch_size=200"])
    both = ["sampler=both"]
    if group == "gpt2":
        return [(f"{precision} compile={compile_}",
                 device + size + both + [f"devices.precision={precision}", f"runtime.compile={compile_}"])
                for precision, compile_ in (("bf16-true", "true"), ("bf16-mixed", "true"), ("bf16-true", "false"))]
    runs = [("bf16-true compile=true", device + size + both + ["devices.precision=bf16-true", "runtime.compile=true"])]
    if not quick:  # 16-mixed needs CUDA
        runs.append(("16-mixed compile=true", device + size + both + ["devices.precision=16-mixed",
                                                                      "runtime.compile=true"]))
    accelerator = "cpu" if quick else "gpu"
    runs.append(("ddp 1 rank bf16-true compile=true",
                 ["devices=ddp", f"devices.accelerator={accelerator}", "devices.ids=1"] + size + both
                 + ["devices.precision=bf16-true", "runtime.compile=true"]))
    study = ["sampler=temperature", "num_samples=4" if quick else "num_samples=16", "draws=2",
             "max_new_tokens=8" if quick else "max_new_tokens=64"]
    runs.append(("study bf16-true compile=true",
                 device + study + ["devices.precision=bf16-true", "runtime.compile=true", "prompts=PROMPTS"]))
    return runs


def run_one(name: str, overrides: list[str], model: Path, run_dir: Path, prompts: Path) -> dict:
    overrides = [o.replace("PROMPTS", str(prompts)) for o in overrides]
    command = [sys.executable, "run.py", f"model.name={model}", f"hydra.run.dir={run_dir}", "print_samples=0",
               *overrides]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    result = {"name": name, "overrides": overrides, "rc": done.returncode, "seconds": round(seconds, 1)}
    artifact = run_dir / "samples.json"
    if done.returncode != 0 or not artifact.exists():
        result["stderr_tail"] = done.stderr[-3000:]
        return result
    metadata = json.loads(artifact.read_text())["metadata"]
    result.update({key: metadata.get(key) for key in ("dtype", "compute_dtype", "engine", "device",
                                                       "samples_file")})
    print(f"{name:40s} rc={done.returncode} {seconds:6.1f} s  dtype={result['dtype']} "
          f"compute={result['compute_dtype']} engine={result['engine']}", flush=True)
    return result


def token_lists(run_dir: Path) -> list | None:
    try:
        frame = load(run_dir)
    except Exception:  # noqa: BLE001 - a failed run has nothing to compare
        return None
    return [list(map(int, ids)) for ids in frame["tokens"]]


def compared(results: list[dict], dirs: dict[str, Path]) -> list[dict]:
    """Runs of one precision with compile on and off: how many samples came out identical."""
    pairs = []
    for on in results:
        if "compile=true" not in on["name"] or on["name"].startswith(("ddp", "study")):
            continue
        off_name = on["name"].replace("compile=true", "compile=false")
        if off_name not in dirs:
            continue
        a, b = token_lists(dirs[on["name"]]), token_lists(dirs[off_name])
        if a is None or b is None:
            continue
        pairs.append({"runs": [on["name"], off_name], "samples": len(a),
                      "identical": sum(x == y for x, y in zip(a, b))})
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer-dir", type=Path,
                        help="a dir with tokenizer.json (default: the bundled SmolLM2's, converted)")
    parser.add_argument("--group", choices=["gpt2", "llama"], required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.tokenizer_dir is None or not args.tokenizer_dir.is_dir():
        args.tokenizer_dir = smollm2_dir()
    root = Path(tempfile.mkdtemp(prefix="gpu-runs-"))
    try:
        model = model_dir(args.group, args.tokenizer_dir, root, args.quick)
        prompts = root / "prompts.txt"
        prompts.write_text("\n".join(PASSAGES) + "\n")
        results, dirs = [], {}

        def report():  # written after every run: a part cut short by its time limit keeps what ran
            document = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                        "torch": torch.__version__, "group": args.group, "runs": results,
                        "compile_on_vs_off": compared(results, dirs)}
            if args.json:
                args.json.write_text(json.dumps(document, indent=1))
            return document
        for name, overrides in planned_runs(args.group, args.quick):
            dirs[name] = root / "runs" / name.replace(" ", "_").replace("=", "-")
            results.append(run_one(name, overrides, model, dirs[name], prompts))
            document = report()
        for pair in document["compile_on_vs_off"]:
            print(f"{' vs '.join(pair['runs'])}: {pair['identical']} / {pair['samples']} identical")
        failed = [r["name"] for r in results if r["rc"] != 0]
        for result in results:
            if result["rc"] != 0:
                print(f"FAILED {result['name']}:\n{result['stderr_tail']}", file=sys.stderr)
        sys.exit(1 if failed else 0)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
