"""Faults of long studies (issue 20), each injected: two runs in one dir, a model changed under a killed
run's shards, SIGTERM, a full disk, a corrupt artifact."""
import errno
import fnmatch
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import huggingface_hub.constants
import pytest
from transformers import AutoTokenizer

import gpt2_sweep
import gpt2_sweep.runner.module
from conftest import REPO, artifact, compose_config, run_app, signal_when, start_run, tiny_gpt2
from gpt2_sweep.analysis.load import UnreadableArtifact
from gpt2_sweep.analysis.summary import summarize
from gpt2_sweep.errors import UsageError
from gpt2_sweep.runner.loading import ModelSource, model_identity
from gpt2_sweep.runner.shards import model_change
from gpt2_sweep.runner.sweep import run_sweep
from test_shards import counting_decode

RESUME = "run the same command again to resume"
HOLD_LOCK = ("import sys, time\n"
             "from gpt2_sweep.runner.lock import run_dir_lock\n"
             "with run_dir_lock(sys.argv[1]):\n"
             "    print('held', flush=True)\n"
             "    time.sleep(120)\n")


def small_run(model_dir, *overrides):
    return compose_config(f"model.name={model_dir}", "sampler=temperature", "num_samples=4", "batch_size=2",
                          "max_length=12", "print_samples=0", *overrides)


def tokenizer_of(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


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


def test_a_sweep_dir_held_by_another_multirun_is_refused_in_one_line(tiny_model_dir, tmp_path):
    holder = holding_the_lock(tmp_path)
    try:
        result = run_app("-m", f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=2,3",
                         "max_length=8", f"hydra.sweep.dir={tmp_path}")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    assert re.fullmatch(rf"error: {re.escape(str(tmp_path))} is in use by another run \(pid {holder.pid} on .+\): "
                        r"wait for it to end, or choose another hydra.run.dir / hydra.sweep.dir\n", result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # no job ran


def test_a_lock_left_by_a_killed_run_does_not_block_the_next(tiny_model_dir, tmp_path):
    holder = holding_the_lock(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / ".lock").exists()  # the file stays; its lock went with the process
    run_sweep(small_run(tiny_model_dir), tmp_path)
    assert len(artifact(tmp_path)["texts"]) == 4
    assert not (tmp_path / ".lock").exists()


def test_a_resume_after_the_model_changed_is_refused_unless_overwrite(tiny_model_dir, tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    run_dir = tmp_path / "run"
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode([], fail_on_call=2))
    with pytest.raises(RuntimeError, match="killed"):  # killed after its first batch
        run_sweep(small_run(model_dir), run_dir)
    assert len(list((run_dir / ".shards").glob("*.pt"))) == 1
    tiny_gpt2(len(tokenizer_of(model_dir)), seed=1).save_pretrained(model_dir)  # new weights, same config
    rows = []
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode(rows))
    with pytest.raises(UsageError, match=r"holds finished batches of another config \(the model "
                                         r"\(model.safetensors changed\)\): overwrite=true removes them"):
        run_sweep(small_run(model_dir), run_dir)
    assert rows == [] and len(list((run_dir / ".shards").glob("*.pt"))) == 1
    run_sweep(small_run(model_dir, "overwrite=true"), run_dir)
    assert rows == [2, 2]  # every sample drawn again, with the new weights
    run_sweep(small_run(model_dir), tmp_path / "whole")
    assert artifact(run_dir)["texts"] == artifact(tmp_path / "whole")["texts"]


def assert_one_terminated_line(code, stdout, stderr, line):
    assert code == 143, stdout + stderr
    assert "Traceback" not in stdout + stderr, stderr
    assert [l for l in stderr.splitlines() if l.strip()] == [f"terminated: {line}"], stderr


LONG_RUN = ["sampler=temperature", "num_samples=400", "batch_size=1", "max_length=64", "print_samples=0"]


@pytest.mark.slow
def test_sigterm_stops_at_a_batch_boundary_keeping_the_finished_shards_for_the_rerun(tiny_model_dir, tmp_path,
                                                                                     monkeypatch, caplog):
    overrides = [f"model.name={tiny_model_dir}", *LONG_RUN]
    process = start_run(*overrides, f"hydra.run.dir={tmp_path}")
    result = signal_when(process, signal.SIGTERM, lambda: list(tmp_path.glob(".shards/*.pt")))
    assert_one_terminated_line(*result, f"nothing half-written is left; {RESUME}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", ".shards", "run.log"]
    shards = list((tmp_path / ".shards").iterdir())
    assert shards and all(p.suffix == ".pt" for p in shards)
    # The same command again, in-process, stopped at its first batch: it resumes from every shard (the
    # whole resume to the uninterrupted artifact: test_shards.py)
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode([], fail_on_call=1))
    with caplog.at_level(logging.INFO), pytest.raises(RuntimeError, match="killed"):
        run_sweep(compose_config(*overrides), tmp_path)
    assert f"Resuming: {len(shards)} of 400 samples are in {tmp_path / '.shards'}" in caplog.text
    assert "cannot be read" not in caplog.text


@pytest.mark.slow
def test_sigterm_in_a_multirun_writes_the_summary_of_the_jobs_that_finished(tiny_model_dir, tmp_path):
    process = start_run("-m", f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=2,400",
                        "batch_size=1", "max_length=64", f"hydra.sweep.dir={tmp_path}")
    code, stdout, stderr = signal_when(process, signal.SIGTERM, lambda: list(tmp_path.glob("1/.shards/*.pt")))
    assert_one_terminated_line(code, stdout, stderr, f"job 0 finished, job 1 did not; {RESUME}")
    assert f"Summary of 2 samples from job 0 written to {tmp_path}" in stdout
    assert sorted(p.name for p in (tmp_path / "1").iterdir()) == [".hydra", ".shards", "run.log"]


def disk_full_for(monkeypatch, pattern: str) -> None:
    """A disk that fills up as a file matching pattern (its temporary name) is flushed: fsync fails with
    ENOSPC there, as it does where the blocks are allocated late; other files are written."""
    real_fsync = os.fsync

    def fsync(descriptor):
        if fnmatch.fnmatch(os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")), pattern):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(descriptor)
    monkeypatch.setattr(os, "fsync", fsync)


def cli_run(model_dir, run_dir):
    return [f"model.name={model_dir}", "sampler=temperature", "num_samples=8", "batch_size=2", "max_length=12",
            "print_samples=0", f"hydra.run.dir={run_dir}"]


NO_SPACE_LINE = (r"^error: no space left to write {path} \(No space left on device\): it needed [\d,]+ bytes, "
                 r"[\d,]+ bytes are free; free some and run the same command again \(what is finished is kept\)$")


@pytest.mark.parametrize("full_at, drawn_again", [(".000000004-000000005.pt.*.tmp", [2, 2]),
                                                   (".samples.json.*.tmp", [])])
def test_a_full_disk_is_one_line_and_the_rerun_resumes(tiny_model_dir, tmp_path, monkeypatch, full_at,
                                                       drawn_again):
    disk_full_for(monkeypatch, full_at)
    result = run_app(*cli_run(tiny_model_dir, tmp_path))
    written = tmp_path / (".shards/000000004-000000005.pt" if full_at.endswith("pt.*.tmp") else "samples.json")
    assert result.returncode == 1, result.stderr
    assert re.match(NO_SPACE_LINE.format(path=re.escape(str(written))), result.stderr.strip()), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    finished = sorted(p.name for p in (tmp_path / ".shards").iterdir())
    assert finished == ["000000000-000000001.pt", "000000002-000000003.pt"] + (
        ["000000004-000000005.pt", "000000006-000000007.pt"] if not drawn_again else [])  # no temporary file
    assert not (tmp_path / "samples.json").exists()
    monkeypatch.undo()  # space freed
    rows = []
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode(rows))
    assert run_app(*cli_run(tiny_model_dir, tmp_path)).returncode == 0
    assert rows == drawn_again and len(artifact(tmp_path)["texts"]) == 8


def test_a_corrupt_artifact_is_named_counted_and_regenerated_by_a_rerun(tiny_model_dir, tmp_path, caplog, capsys):
    for job in ("0", "1"):
        run_sweep(small_run(tiny_model_dir, "num_samples=2"), tmp_path / job)
    corrupt = tmp_path / "1" / "samples.json"
    corrupt.write_bytes(corrupt.read_bytes()[:100])  # truncated
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        samples = gpt2_sweep.load(tmp_path)
    assert len(samples) == 2 and samples.attrs["unreadable"] == [str(corrupt)]
    assert [record.getMessage() for record in caplog.records] == [
        f"{corrupt} cannot be read (not valid JSON: truncated or corrupt): its samples are left out; run its job "
        "again to regenerate it"]
    with pytest.raises(UnreadableArtifact, match=rf"^{re.escape(str(corrupt))} cannot be read"):
        gpt2_sweep.load(tmp_path, strict=True)
    summarize(tmp_path)
    assert capsys.readouterr().out.strip().endswith(
        "; 1 unreadable samples.json left out (job 1: run again to regenerate)")
    run_sweep(small_run(tiny_model_dir, "num_samples=2"), tmp_path / "1")  # the job run again
    caplog.clear()
    assert len(gpt2_sweep.load(tmp_path, strict=True)) == 4 and not caplog.records


def test_an_exit_during_generation_is_not_taken_for_ctrl_c(tiny_model_dir, tmp_path, monkeypatch):
    """submitit requeues a job on USR2 by sys.exit in its signal handler, wherever the job is: inside
    Trainer.predict that exit must go on as it is (it was taken for Lightning's exit after Ctrl-C)."""
    def requeued(*args, **kwargs):
        sys.exit(3)

    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", requeued)
    with pytest.raises(SystemExit) as ended:
        run_sweep(small_run(tiny_model_dir), tmp_path)
    assert ended.value.code == 3


def submitit_job(launcher: int) -> int:
    """The pid of the submitit job (`python -m submitit.core._submit`) below the launcher process."""
    parents = {}
    for entry in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{entry}/stat").read()
            command = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if entry.isdigit():
            parents[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), b"submitit.core._submit" in command)
    below = {launcher}
    for _ in range(4):  # the job runs two levels down
        below |= {pid for pid, (parent, _) in parents.items() if parent in below}
    return next(pid for pid in below if parents.get(pid, (0, False))[1])


@pytest.mark.slow
def test_a_local_submitit_job_sent_usr2_requeues_and_resumes_from_its_shards(tiny_model_dir, tmp_path):
    """What SLURM does before a pre-emption or the time limit (hydra.launcher.signal_delay_s), here to a
    submitit_local job: submitit requeues it, and the requeued job draws only what its shards lack."""
    process = start_run("-m", "hydra/launcher=submitit_local", f"model.name={tiny_model_dir}", "sampler=temperature",
                        "num_samples=60", "batch_size=1", "max_length=64", f"hydra.sweep.dir={tmp_path}")
    deadline = time.time() + 180
    while not list(tmp_path.glob("0/.shards/*.pt")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the sweep ended before its job could be signalled"
    os.kill(submitit_job(process.pid), signal.SIGUSR2)
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    assert len(artifact(tmp_path / "0")["texts"]) == 60
    log = (tmp_path / "0" / "run.log").read_text()
    assert "Requeued job" in log and re.search(r"Resuming: \d+ of 60 samples are in", log), log


def test_a_hub_models_identity_is_the_commit_of_its_cached_snapshot(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--tiny"

    def cached(commit):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        return model_identity(ModelSource("org/tiny"))

    before, after = cached("a" * 40), cached("b" * 40)
    assert before == {"hub_id": "org/tiny", "revision": None, "commit": "a" * 40}
    assert model_change(before, after) == f"the model (commit {'a' * 12} -> {'b' * 12})"


def test_a_finished_run_whose_model_changed_since_is_refused_not_skipped(tiny_model_dir, tmp_path, capsys):
    """The config is the same, the weights in its model dir are not: the artifact is not this run's."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    run_dir = tmp_path / "run"
    run_sweep(small_run(model_dir), run_dir)
    before = (run_dir / "samples.json").read_bytes()
    run_sweep(small_run(model_dir), run_dir)
    assert "Skipped:" in capsys.readouterr().out
    tiny_gpt2(len(tokenizer_of(model_dir)), seed=1).save_pretrained(model_dir)  # new weights, same config
    with pytest.raises(UsageError, match=r"holds samples of the model \(model.safetensors changed\): "
                                         r"overwrite=true draws them again"):
        run_sweep(small_run(model_dir), run_dir)
    assert (run_dir / "samples.json").read_bytes() == before
    run_sweep(small_run(model_dir, "overwrite=true"), run_dir)
    assert (run_dir / "samples.json").read_bytes() != before
    shutil.rmtree(model_dir)  # the model gone: nothing to compare, the finished run is skipped
    run_sweep(small_run(model_dir), run_dir)
    assert "Skipped:" in capsys.readouterr().out
