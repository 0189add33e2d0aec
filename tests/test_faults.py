"""Faults of long studies (issue 20), each injected: two runs in one dir, a model changed under a killed
run's shards, SIGTERM, a full disk, a corrupt artifact."""
import signal
import subprocess
import sys

import pytest

from conftest import REPO, artifact, compose_config
from gpt2_sweep.errors import UsageError
from gpt2_sweep.runner.sweep import run_sweep

HOLD_LOCK = ("import sys, time\n"
             "from gpt2_sweep.runner.lock import run_dir_lock\n"
             "with run_dir_lock(sys.argv[1]):\n"
             "    print('held', flush=True)\n"
             "    time.sleep(120)\n")


def small_run(model_dir, *overrides):
    return compose_config(f"model.name={model_dir}", "sampler=temperature", "num_samples=4", "batch_size=2",
                          "max_length=12", "print_samples=0", *overrides)


def holding_the_lock(run_dir) -> subprocess.Popen:
    """Another process that holds run_dir's lock, as a run in progress does."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], cwd=REPO, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline() == "held\n"
    return process


def test_a_run_dir_held_by_another_run_is_refused_naming_it(tiny_model_dir, tmp_path):
    holder = holding_the_lock(tmp_path)
    try:
        with pytest.raises(UsageError, match=rf"^{tmp_path} is in use by another run \(pid {holder.pid} on .+, "
                                             r"started 20\d\d-.+\): wait for it to end"):
            run_sweep(small_run(tiny_model_dir), tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "samples.json").exists()


def test_a_lock_left_by_a_killed_run_does_not_block_the_next(tiny_model_dir, tmp_path):
    holder = holding_the_lock(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / ".lock").exists()  # the file stays; its lock went with the process
    run_sweep(small_run(tiny_model_dir), tmp_path)
    assert len(artifact(tmp_path)["texts"]) == 4
    assert not (tmp_path / ".lock").exists()
