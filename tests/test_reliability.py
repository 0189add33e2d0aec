"""Kill-safe artifacts, resumable sweeps, isolated job failures, out-of-memory back-off, odd input."""
import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import GPT2Config

import gpt2_sweep.module
from conftest import REPO, run_cli
from gpt2_sweep.memory import bytes_per_sample, fitting_batch_size, kv_bytes_per_position
from gpt2_sweep.module import SamplingModule
from gpt2_sweep.sampling import shared_uniforms
from gpt2_sweep.schedules import sweep_settings
from gpt2_sweep.sweep import run_sweep


def artifact(directory):
    return json.loads((directory / "samples.json").read_text(encoding="utf-8"))


def read_summary_rows(directory):
    with open(directory / "summary.csv", newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_a_run_killed_mid_generation_leaves_no_artifact_and_reruns_cleanly(tiny_model_dir, tmp_path):
    overrides = [f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=60", "batch_size=1",
                 "max_length=64", f"hydra.run.dir={tmp_path}"]
    process = subprocess.Popen([sys.executable, str(REPO / "run.py"), *overrides], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".ranks-*")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "samples.json").exists()
    rerun = run_cli(*overrides)
    assert rerun.returncode == 0, rerun.stderr
    document = artifact(tmp_path)
    assert len(document["texts"]) == 60 and all(len(s["tokens"]) == 64 for s in document["texts"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".hydra") == []


def test_rerunning_a_multirun_skips_finished_jobs_and_overwrite_regenerates(tiny_model_dir, tmp_path):
    overrides = ["-m", f"model.name={tiny_model_dir}", "sampler.temperature=true,false", "num_samples=2",
                 "max_length=8", f"hydra.sweep.dir={tmp_path}"]
    assert run_cli(*overrides).returncode == 0
    artifacts = sorted(tmp_path.glob("*/samples.json"))
    assert len(artifacts) == 2
    written = {path: path.stat().st_mtime_ns for path in artifacts}
    again = run_cli(*overrides)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("Skipped:") == 2
    assert {path: path.stat().st_mtime_ns for path in artifacts} == written
    assert f"Summary of 4 samples from jobs 0, 1 written to {tmp_path}" in again.stdout  # skipped jobs count
    regenerated = run_cli(*overrides, "overwrite=true")
    assert regenerated.returncode == 0 and "Skipped:" not in regenerated.stdout
    assert all(path.stat().st_mtime_ns > written[path] for path in artifacts)

    # Fewer jobs in the same dir: the summary covers this multirun's, not the artifacts of earlier ones.
    fewer = run_cli(*overrides[:2], "sampler.temperature=true", *overrides[3:])
    assert fewer.returncode == 0 and fewer.stdout.count("Skipped:") == 1, fewer.stderr
    assert f"Summary of 2 samples from job 0 written to {tmp_path}" in fewer.stdout
    assert "1 samples.json in the dir that this multirun did not write left out (job 1)" in fewer.stdout
    assert len(read_summary_rows(tmp_path)) == 2

    # Every job fails (another config in its dir): no summary of older artifacts, each failure said once.
    changed = run_cli(*overrides, "num_samples=3")
    assert changed.returncode == 1
    assert "Summary of" not in changed.stdout and "no job of this multirun finished" in changed.stdout
    output = changed.stdout + changed.stderr
    assert output.count("holds the samples of another config") == 2, output
    assert [line.startswith("error: job ") for line in changed.stderr.splitlines()] == [True, True]


def test_a_different_config_in_a_finished_dir_is_an_error_unless_overwrite(tiny_model_dir, tmp_path):
    base = [f"model.name={tiny_model_dir}", "max_length=8", f"hydra.run.dir={tmp_path}"]
    assert run_cli(*base).returncode == 0
    before = artifact(tmp_path)
    other = run_cli(*base, "seed=3")
    assert other.returncode == 2 and "seed: 0 -> 3" in other.stderr and "overwrite=true" in other.stderr
    assert artifact(tmp_path) == before
    replaced = run_cli(*base, "seed=3", "overwrite=true")
    assert replaced.returncode == 0 and artifact(tmp_path)["metadata"]["seed"] == 3


def test_a_failing_job_writes_error_json_and_the_others_still_run(tiny_model_dir, tmp_path):
    result = run_cli("-m", f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=0,2", "max_length=8",
                     f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 1
    error = json.loads((tmp_path / "0" / "error.json").read_text())
    assert "num_samples=0" in error["message"] and "num_samples=0" in error["overrides"]
    assert error["time"] and error["type"] == "UsageError"
    assert not (tmp_path / "0" / "samples.json").exists()
    assert len(artifact(tmp_path / "1")["texts"]) == 2
    report = [line for line in result.stderr.splitlines() if line.startswith("error: job")]
    assert len(report) == 1 and "num_samples=0" in report[0]
    fixed = run_cli("-m", f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=1,2", "max_length=8",
                    f"hydra.sweep.dir={tmp_path}")
    assert fixed.returncode == 0 and not (tmp_path / "0" / "error.json").exists()


def out_of_memory_above(limit, calls):
    real = gpt2_sweep.module.decode

    def limited(engine, model, prompt_ids, temperatures, *args, **kwargs):
        calls.append(len(temperatures))
        if len(temperatures) > limit:
            raise torch.OutOfMemoryError("simulated out of memory")
        return real(engine, model, prompt_ids, temperatures, *args, **kwargs)
    return limited


def sampling_module(model, tokenizer, count=6):
    settings, _ = sweep_settings({"temperature": True, "nucleus": True},
                                 {"temperature": (0.0, 1.2), "nucleus": (0.2, 1.0)}, {}, count)
    prompt = torch.tensor(tokenizer.encode("The quick"))
    return SamplingModule(model, prompt, settings, shared_uniforms(0, 19), 20)


def test_out_of_memory_halves_the_batch_and_keeps_the_samples(tiny_model, tokenizer, monkeypatch):
    expected = sampling_module(tiny_model, tokenizer).sample(torch.arange(6)).tokens
    calls = []
    monkeypatch.setattr(gpt2_sweep.module, "decode", out_of_memory_above(2, calls))
    module = sampling_module(tiny_model, tokenizer)
    assert torch.equal(module.sample(torch.arange(6)).tokens, expected)
    assert module.max_rows == 2 and calls[:2] == [6, 3]
    calls.clear()
    assert torch.equal(module.sample(torch.arange(6)).tokens, expected)  # later batches start small
    assert calls == [2, 2, 2]


def test_the_artifact_records_the_batch_an_out_of_memory_error_left(tiny_model_dir, tmp_path, monkeypatch):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model.name={tiny_model_dir}", "sampler=both",
                                                        "num_samples=6", "max_length=12"])
    run_sweep(cfg, tmp_path / "plain")
    monkeypatch.setattr(gpt2_sweep.module, "decode", out_of_memory_above(2, []))
    run_sweep(cfg, tmp_path / "backed-off")
    plain, backed_off = artifact(tmp_path / "plain"), artifact(tmp_path / "backed-off")
    assert plain["metadata"]["batch_size_after_out_of_memory"] is None
    assert backed_off["metadata"]["batch_size_after_out_of_memory"] == 2
    assert backed_off["metadata"]["batch_size"] == plain["metadata"]["batch_size"] == 6
    assert backed_off["texts"] == plain["texts"]


def test_out_of_memory_with_one_sample_is_raised(tiny_model, tokenizer, monkeypatch):
    monkeypatch.setattr(gpt2_sweep.module, "decode", out_of_memory_above(0, []))
    with pytest.raises(torch.OutOfMemoryError):
        sampling_module(tiny_model, tokenizer).sample(torch.arange(3))


def test_gpu_batch_size_fits_the_kv_cache_beside_the_weights():
    gpt2 = GPT2Config()
    assert kv_bytes_per_position(gpt2, torch.bfloat16) == 36864  # 12 layers x 2 x 768 x 2 bytes
    per_sample = bytes_per_sample(gpt2, 257, torch.bfloat16)
    assert per_sample == 36864 * 257 + 32 * 50257
    assert fitting_batch_size(2048, 80 * 10**9, 250 * 10**6, per_sample) == 2048
    fits = fitting_batch_size(10**6, 8 * 10**9, 250 * 10**6, per_sample)
    assert fits * per_sample <= 0.8 * (8 * 10**9 - 250 * 10**6) < (fits + 1) * per_sample
    assert fitting_batch_size(100, 10**6, 2 * 10**6, per_sample) == 1
    # 64-true: twice the KV cache, and float64 sampling buffers
    assert bytes_per_sample(gpt2, 257, torch.float64) == 4 * 36864 * 257 + 64 * 50257


ODD_PROMPTS = {
    "control characters": "bell\x07 escape\x1b[31m tab\t end",
    "right-to-left and combining": "שלום e\u0301 \u202eabc",
    "zero-width joiners and BOM": "\U0001F468\u200d\U0001F469\u200d\U0001F467 \ufeff x",
}


@pytest.mark.parametrize("prompt", ODD_PROMPTS.values(), ids=ODD_PROMPTS.keys())
def test_odd_but_valid_prompts_work_when_quoted(tiny_model_dir, tmp_path, prompt):
    result = run_cli(f"model.name={tiny_model_dir}", f"prompt='{prompt}'", "max_length=60",
                     f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert artifact(tmp_path)["metadata"]["prompt"] == prompt


def test_an_unquoted_control_character_is_one_clear_line(tmp_path):
    result = run_cli("prompt=bell\x07 x", f"hydra.run.dir={tmp_path}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "quote" in lines[0] and "\\x07" in lines[0]


def test_empty_prompt_starts_from_bos(tiny_model_dir, tmp_path, tokenizer):
    result = run_cli(f"model.name={tiny_model_dir}", "prompt=''", "max_length=6", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    sample = artifact(tmp_path)["texts"][0]
    assert sample["tokens"][0] == tokenizer.bos_token_id and sample["prompt_tokens"] == 1


def test_a_prompt_longer_than_the_context_is_one_line(tiny_model_dir, tmp_path):
    result = run_cli(f"model.name={tiny_model_dir}", f"prompt='{'The quick brown fox ' * 30}'",
                     f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2 and "the model takes at most 64" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "samples.json").exists()


def test_nul_bytes_in_a_prompt_work(tiny_model_dir, tmp_path):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model.name={tiny_model_dir}", "max_length=12"])
    cfg.prompt = "nul\x00byte"
    run_sweep(cfg, tmp_path)
    assert artifact(tmp_path)["metadata"]["prompt"] == "nul\x00byte"


def test_many_samples_in_small_batches(tiny_model_dir, tmp_path):
    result = run_cli(f"model.name={tiny_model_dir}", "sampler=nucleus", "num_samples=1500", "batch_size=7",
                     "max_length=3", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert len(artifact(tmp_path)["texts"]) == 1500


@pytest.mark.parametrize("overrides, outcome", [
    (["sampler=temperature", "num_samples=3", "num_samples=2"], 2),  # the last value wins, as in Hydra
    (["sampler=both", "sampler.temperature=false"], 4),     # a preset, then one switch off
    (["devices=cpu", "devices.accelerator=gpu"], "devices.accelerator=gpu"),
    (["sampler.schedule=grid", "sampler=default"], 4),      # grid with both sweeps off: num_samples
])
def test_contradictory_overrides_work_or_fail_clearly(tiny_model_dir, tmp_path, overrides, outcome):
    result = run_cli(f"model.name={tiny_model_dir}", "max_length=6", *overrides, f"hydra.run.dir={tmp_path}")
    if isinstance(outcome, int):
        assert result.returncode == 0, result.stderr
        assert len(artifact(tmp_path)["texts"]) == outcome
    else:
        assert result.returncode == 2 and outcome in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "samples.json").exists()
