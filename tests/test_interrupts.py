"""Ctrl-C: one line `interrupted: ...` on stderr, exit code 130, no traceback, nothing half-written, and
in a multirun the summary of the jobs that finished. Real processes sent a real SIGINT, and the
Lightning path in-process."""
import signal
import time

import pytest

import gpt2_sweep.runner.module
from conftest import artifact, compose_config, signal_when, start_run
from gpt2_sweep.runner.sweep import run_sweep

RESUME = "run the same command again to resume"


def assert_one_interrupted_line(code, stdout, stderr, line):
    assert code == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr and "KeyboardInterrupt" not in stdout + stderr, stderr
    assert [l for l in stderr.splitlines() if l.strip()] == [f"interrupted: {line}"], stderr


LONG_RUN = ["sampler=temperature", "num_samples=400", "batch_size=1", "max_length=64"]


@pytest.mark.slow
def test_ctrl_c_during_start_up_is_one_line_and_leaves_no_run_dir(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    process = start_run(f"model.name={tiny_model_dir}", *LONG_RUN, f"hydra.run.dir={run_dir}")
    # Hydra has made the run dir: the run now imports torch, transformers and Lightning (seconds).
    result = signal_when(process, signal.SIGINT, lambda: (run_dir / ".hydra" / "config.yaml").exists())
    assert_one_interrupted_line(*result, f"nothing half-written is left; {RESUME}")
    assert not run_dir.exists()


@pytest.mark.slow
def test_ctrl_c_during_generation_is_one_line_and_keeps_only_the_finished_batches(tiny_model_dir, tmp_path):
    process = start_run(f"model.name={tiny_model_dir}", *LONG_RUN, f"hydra.run.dir={tmp_path}")
    result = signal_when(process, signal.SIGINT, lambda: list(tmp_path.glob(".shards/*.pt")) and time.sleep(1) is None)
    assert_one_interrupted_line(*result, f"nothing half-written is left; {RESUME}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", ".shards", "run.log"]
    assert all(p.suffix == ".pt" for p in (tmp_path / ".shards").iterdir())


@pytest.mark.slow
def test_ctrl_c_in_a_multirun_writes_the_summary_of_the_jobs_that_finished(tiny_model_dir, tmp_path):
    process = start_run("-m", f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=2,400",
                        "batch_size=1", "max_length=64", f"hydra.sweep.dir={tmp_path}")
    code, stdout, stderr = signal_when(process, signal.SIGINT,
                                       lambda: list(tmp_path.glob("1/.shards/*.pt")) and time.sleep(1) is None)
    assert_one_interrupted_line(code, stdout, stderr, f"job 0 finished, job 1 did not; {RESUME}")
    assert f"Summary of 2 samples from job 0 written to {tmp_path}" in stdout
    assert len(artifact(tmp_path / "0")["texts"]) == 2
    # no error.json either; the finished batches kept for the rerun
    assert sorted(p.name for p in (tmp_path / "1").iterdir()) == [".hydra", ".shards", "run.log"]


def test_lightning_catching_ctrl_c_is_an_interrupt_not_an_exit(tiny_model_dir, tmp_path, monkeypatch):
    """Lightning catches KeyboardInterrupt inside Trainer.predict and exits with code 1."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(compose_config(f"model.name={tiny_model_dir}", "max_length=8"), tmp_path)
        assert signal.getsignal(signal.SIGINT) is handler  # Lightning ignores Ctrl-C from then on
    finally:
        signal.signal(signal.SIGINT, handler)
    assert list(tmp_path.iterdir()) == []
