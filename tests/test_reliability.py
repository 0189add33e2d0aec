"""Kill-safe artifacts, resumable sweeps, isolated job failures, out-of-memory back-off."""
import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from transformers import GPT2Config

import gpt2_sweep.runner.module
from conftest import REPO, artifact, compose_config, run_app
from gpt2_sweep.errors import UsageError
from gpt2_sweep.decoding.memory import bytes_per_sample, fitting_batch_size, kv_bytes_per_position
from gpt2_sweep.runner.module import SamplingModule
from gpt2_sweep.runner.prompts import Prompt
from gpt2_sweep.runner.schedules import sweep_settings
from gpt2_sweep.runner.study import Study
from gpt2_sweep.runner.sweep import run_sweep


def read_summary_rows(directory):
    with open(directory / "summary.csv", newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_a_run_killed_mid_generation_leaves_no_artifact_and_reruns_cleanly(tiny_model_dir, tmp_path):
    overrides = [f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=60", "batch_size=1",
                 "max_length=64", f"hydra.run.dir={tmp_path}"]
    process = subprocess.Popen([sys.executable, str(REPO / "run.py"), *overrides], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".shards/*.pt")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "samples.json").exists()
    run_sweep(compose_config(*overrides[:-1]), tmp_path)  # the same command again, in-process
    document = artifact(tmp_path)
    assert len(document["texts"]) == 60 and all(len(s["tokens"]) == 64 for s in document["texts"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".hydra") == []


@pytest.mark.slow
def test_rerunning_a_multirun_skips_finished_jobs_and_overwrite_regenerates(tiny_model_dir, tmp_path):
    overrides = ["-m", f"model.name={tiny_model_dir}", "sampler.temperature=true,false", "num_samples=2",
                 "max_length=8", f"hydra.sweep.dir={tmp_path}"]
    assert run_app(*overrides).returncode == 0
    artifacts = sorted(tmp_path.glob("*/samples.json"))
    assert len(artifacts) == 2
    written = {path: path.stat().st_mtime_ns for path in artifacts}
    again = run_app(*overrides)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("Skipped:") == 2
    assert {path: path.stat().st_mtime_ns for path in artifacts} == written
    assert f"Summary of 4 samples from jobs 0, 1 written to {tmp_path}" in again.stdout  # skipped jobs count

    # overwrite=true regenerates; with fewer jobs in the same dir, the summary covers this multirun's
    # job only, not the artifact an earlier multirun left.
    fewer = run_app(*overrides[:2], "sampler.temperature=true", *overrides[3:], "overwrite=true")
    assert fewer.returncode == 0 and "Skipped:" not in fewer.stdout, fewer.stderr
    assert artifacts[0].stat().st_mtime_ns > written[artifacts[0]]
    assert artifacts[1].stat().st_mtime_ns == written[artifacts[1]]
    assert f"Summary of 2 samples from job 0 written to {tmp_path}" in fewer.stdout
    assert "1 samples.json in the dir that this multirun did not write left out (job 1)" in fewer.stdout
    assert len(read_summary_rows(tmp_path)) == 2

    # Every job fails (another config in its dir): no summary of older artifacts, each failure said once.
    changed = run_app(*overrides, "num_samples=3")
    assert changed.returncode == 1
    assert "Summary of" not in changed.stdout and "no job of this multirun finished" in changed.stdout
    output = changed.stdout + changed.stderr
    assert output.count("holds the samples of another config") == 2, output
    assert [line.startswith("error: job ") for line in changed.stderr.splitlines()] == [True, True]


def test_a_different_config_in_a_finished_dir_is_an_error_unless_overwrite(tiny_model_dir, tmp_path):
    base = [f"model.name={tiny_model_dir}", "max_length=8"]
    run_sweep(compose_config(*base), tmp_path)
    before = artifact(tmp_path)
    with pytest.raises(UsageError, match="seed: 0 -> 3") as refused:
        run_sweep(compose_config(*base, "seed=3"), tmp_path)
    assert "overwrite=true" in str(refused.value)
    assert artifact(tmp_path) == before
    run_sweep(compose_config(*base, "seed=3", "overwrite=true"), tmp_path)
    assert artifact(tmp_path)["metadata"]["seed"] == 3


def test_a_failing_job_writes_error_json_and_the_others_still_run(tiny_model_dir, tmp_path):
    result = run_app("-m", f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=0,2", "max_length=8",
                     f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 1
    error = json.loads((tmp_path / "0" / "error.json").read_text())
    assert "num_samples=0" in error["message"] and "num_samples=0" in error["overrides"]
    assert error["time"] and error["type"] == "UsageError"
    assert not (tmp_path / "0" / "samples.json").exists()
    assert len(artifact(tmp_path / "1")["texts"]) == 2
    report = [line for line in result.stderr.splitlines() if line.startswith("error: job")]
    assert len(report) == 1 and "num_samples=0" in report[0]
    assert len(read_summary_rows(tmp_path)) == 2 and (tmp_path / "plot_perplexity.png").exists()
    assert f"Summary of 2 samples from job 1 written to {tmp_path}" in result.stdout
    fixed = run_app("-m", f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=1,2", "max_length=8",
                    f"hydra.sweep.dir={tmp_path}")
    assert fixed.returncode == 0 and not (tmp_path / "0" / "error.json").exists(), fixed.stderr


GPU_OUT_OF_MEMORY = torch.OutOfMemoryError("simulated out of memory")
# What torch's CPU allocator raises when the machine's memory runs out.
CPU_OUT_OF_MEMORY = RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate "
                                 "memory: you tried to allocate 1610612736000 bytes. Error code 12 (Cannot "
                                 "allocate memory)")


def out_of_memory_above(limit, calls, error=GPU_OUT_OF_MEMORY):
    real = gpt2_sweep.runner.module.decode

    def limited(engine, model, prompt_ids, temperatures, *args, **kwargs):
        calls.append(len(temperatures))
        if len(temperatures) > limit:
            raise error
        return real(engine, model, prompt_ids, temperatures, *args, **kwargs)
    return limited


def sampling_module(model, tokenizer, count=6):
    settings, _ = sweep_settings({"temperature": True, "nucleus": True},
                                 {"temperature": (0.0, 1.2), "nucleus": (0.2, 1.0)}, {}, count)
    prompt = tokenizer.encode("The quick")
    return SamplingModule(model, Study.crossed([Prompt(0, "The quick")], [prompt], 1, settings, 20 - len(prompt), 0))


@pytest.mark.parametrize("error", [GPU_OUT_OF_MEMORY, CPU_OUT_OF_MEMORY], ids=["gpu", "cpu"])
def test_out_of_memory_halves_the_batch_and_keeps_the_samples(tiny_model, tokenizer, monkeypatch, error):
    expected = sampling_module(tiny_model, tokenizer).sample(torch.arange(6)).tokens
    calls = []
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", out_of_memory_above(2, calls, error))
    module = sampling_module(tiny_model, tokenizer)
    assert torch.equal(module.sample(torch.arange(6)).tokens, expected)
    assert module.max_rows == 2 and calls[:2] == [6, 3]
    calls.clear()
    assert torch.equal(module.sample(torch.arange(6)).tokens, expected)  # later batches start small
    assert calls == [2, 2, 2]


def test_the_artifact_records_the_batch_an_out_of_memory_error_left(tiny_model_dir, tmp_path, monkeypatch):
    cfg = compose_config(f"model.name={tiny_model_dir}", "sampler=both", "num_samples=6", "max_length=12")
    run_sweep(cfg, tmp_path / "plain")
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", out_of_memory_above(2, []))
    run_sweep(cfg, tmp_path / "backed-off")
    plain, backed_off = artifact(tmp_path / "plain"), artifact(tmp_path / "backed-off")
    assert plain["metadata"]["batch_size_after_out_of_memory"] is None
    assert backed_off["metadata"]["batch_size_after_out_of_memory"] == 2
    assert backed_off["metadata"]["batch_size"] == plain["metadata"]["batch_size"] == 6
    assert backed_off["texts"] == plain["texts"]


@pytest.mark.parametrize("error", [GPU_OUT_OF_MEMORY, CPU_OUT_OF_MEMORY], ids=["gpu", "cpu"])
def test_out_of_memory_with_one_sample_is_one_line(tiny_model, tokenizer, monkeypatch, error):
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", out_of_memory_above(0, [], error))
    with pytest.raises(UsageError, match="out of memory with one sample in a batch") as refused:
        sampling_module(tiny_model, tokenizer).sample(torch.arange(3))
    assert "\n" not in str(refused.value)


def test_other_runtime_errors_are_not_taken_for_out_of_memory(tiny_model, tokenizer, monkeypatch):
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", out_of_memory_above(0, [], RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        sampling_module(tiny_model, tokenizer).sample(torch.arange(3))


def test_a_cpu_run_out_of_memory_with_one_sample_leaves_one_line_and_no_run_dir(tiny_model_dir, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", out_of_memory_above(0, [], CPU_OUT_OF_MEMORY))
    monkeypatch.chdir(tmp_path)
    result = run_app(f"model.name={tiny_model_dir}", "num_samples=2", "max_length=6", "hydra.run.dir=run")
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and [line for line in lines if not line.startswith("warning: ")] == lines[-1:]
    assert lines[-1].startswith("error: out of memory with one sample in a batch") and "Traceback" not in result.stdout
    assert not (tmp_path / "run").exists()


def test_gpu_batch_size_fits_the_kv_cache_beside_the_weights():
    gpt2 = GPT2Config()
    assert kv_bytes_per_position(gpt2, torch.bfloat16) == 36864  # 12 layers x 2 x 768 x 2 bytes
    per_sample = bytes_per_sample(gpt2, 257, torch.bfloat16)
    assert per_sample == 36864 * 257 + 32 * 50257
    assert bytes_per_sample(gpt2, 66, torch.bfloat16) == 36864 * 128 + 32 * 50257  # the static cache's 2 buckets
    assert fitting_batch_size(2048, 80 * 10**9, 250 * 10**6, per_sample) == 2048
    fits = fitting_batch_size(10**6, 8 * 10**9, 250 * 10**6, per_sample)
    assert fits * per_sample <= 0.8 * (8 * 10**9 - 250 * 10**6) < (fits + 1) * per_sample
    assert fitting_batch_size(100, 10**6, 2 * 10**6, per_sample) == 1
    # 64-true: twice the KV cache, and float64 sampling buffers
    assert bytes_per_sample(gpt2, 257, torch.float64) == 4 * 36864 * 257 + 64 * 50257
