"""The GPU check script (benchmarks/check_tokens.py), run here on the CPU with a small model."""
import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO, tiny_gpt2

SCRIPT = REPO / "benchmarks" / "check_tokens.py"


def load_script():
    spec = importlib.util.spec_from_file_location("check_tokens", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_pick_agrees_with_the_float64_rule_and_both_paths_agree(tmp_path):
    tiny_gpt2(3000, seed=1).save_pretrained(tmp_path / "model")  # more tokens than candidates
    output = tmp_path / "check.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--dtype", "fp32", "--batches", "6,9",
                             "--new", "20", "--model-dir", str(tmp_path / "model"), "--json", str(output)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(output.read_text())["rows"]
    assert [(row["loop"], row["picks"]) for row in rows] == [("dynamic", 120), ("dynamic", 180), ("static", 120),
                                                             ("static", 180)]
    for row in rows:
        assert row["differ_beyond_tolerance"] == 0 and row["fast_vs_full_sort_differ"] == 0
        assert row["agree"] + row["differ_within_tolerance"] == row["picks"]


def test_the_check_catches_a_loop_that_reads_the_wrong_uniform(monkeypatch):
    check_tokens = load_script()
    lm = check_tokens.RecordingLM(tiny_gpt2(3000, seed=1))
    real_generate = check_tokens.generate

    def off_by_one(lm, prompts, settings, uniforms, *args, **kwargs):
        return real_generate(lm, prompts, settings, uniforms.roll(1, dims=-1), *args, **kwargs)

    monkeypatch.setattr(check_tokens, "generate", off_by_one)
    counts = check_tokens.check(lm, batch=6, new=20, tolerance=1e-4, device="cpu")
    assert counts["differ_beyond_tolerance"] > 10


@pytest.mark.slow
def test_the_batch_invariance_script_counts_identical_samples(tiny_model_dir, tmp_path):
    output = tmp_path / "invariance.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "batch_invariance.py"), "--device", "cpu",
                             "--dtype", "fp32", "--samples", "8", "--batches", "8,3", "--new", "6", "--model-dir",
                             str(tiny_model_dir), "--json", str(output)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(output.read_text())["rows"]
    assert [(row["model"], row["batch_invariant"]) for row in rows] == [
        ("random weights", False), ("random weights", True), ("output head x8", False), ("output head x8", True)]
    assert all(row["identical"] == row["samples"] == 8 for row in rows)  # the CPU is row-invariant either way


def test_the_check_catches_a_compiled_run_that_picks_far_from_the_rule(monkeypatch):
    """A compiled run may part from the eager one only near a boundary: a row whose compiled pick is far
    from the float64 rule's is counted (the fake compiled run here is the eager one with row 2 from
    step 5 on replaced by the greedy row's tokens)."""
    check_tokens = load_script()
    lm = check_tokens.RecordingLM(tiny_gpt2(3000, seed=1))
    real_generate_static = check_tokens.generate_static

    def swapped_when_compiled(model, *arguments, compiled=False, cuda_graphs=False, **options):
        drawn = real_generate_static(model, *arguments, compiled=False, **options)
        if compiled:
            drawn.tokens = drawn.tokens.clone()
            drawn.tokens[2, 5:] = drawn.tokens[0, 5:]
        return drawn

    monkeypatch.setattr(check_tokens, "generate_static", swapped_when_compiled)
    counts = check_tokens.check(lm, batch=6, new=20, tolerance=1e-4, device="cpu", loop="static", compiled=True)
    assert counts["compiled_rows_parted"] == 1
    assert counts["compiled_partings_unexplained"] == 1
    assert counts["differ_beyond_tolerance"] == 0  # the eager run itself is right


def test_a_compiled_parting_that_bf16_rounding_explains_passes_and_one_it_cannot_fails():
    """Greedy rows: the runner-up within a bf16 unit in the last place of the top logit may be the
    compiled argmax, a token further down may not; sampled rows: u within the rounding of the picked
    token's interval passes, far outside it fails, and so does a token the nucleus cannot keep."""
    check_tokens = load_script()
    logits = torch.tensor([3.0, 3.0 - 2**-6, 1.0, 0.5], dtype=torch.bfloat16)  # 2**-6: bf16's last place at 3
    slack = check_tokens.logit_slack(logits, 2.0)
    assert slack == 2 * 2**-6
    possible = check_tokens.compiled_pick_possible
    assert possible(logits, 0.0, 1.0, 0.5, 1, slack, 1e-4) and not possible(logits, 0.0, 1.0, 0.5, 2, slack, 1e-4)
    spaced = -0.5 * torch.arange(8, dtype=torch.bfloat16)  # token 0 covers [0, 0.401) of the mass
    assert possible(spaced, 1.0, 1.0, 0.41, 0, slack, 1e-4)  # just past its end: rounding reaches it
    assert not possible(spaced, 1.0, 1.0, 0.9, 0, slack, 1e-4)
    assert not possible(spaced, 1.0, 0.3, 0.1, 5, slack, 1e-4)  # the nucleus (0.3) cannot keep token 5
