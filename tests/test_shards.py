"""Long runs that survive: each batch saved as a shard when drawn, a killed run resumed from its
finished shards into the artifact an uninterrupted run writes, never mixing the shards of two configs."""
import io
import logging
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

import gpt2_sweep.runner.module
import gpt2_sweep.runner.progress
from conftest import REPO, artifact, compose_config
from gpt2_sweep.errors import UsageError
from gpt2_sweep.runner.progress import Progress
from gpt2_sweep.runner.sweep import run_sweep

REAL_DECODE = gpt2_sweep.runner.module.decode
PROMPTS = ["The quick brown fox jumps", "A sweep", "Language models write one token"]


def one_prompt(model_dir, *overrides):
    return [f"model.name={model_dir}", "sampler=temperature", "num_samples=8", "batch_size=2", "max_length=16",
            "print_samples=0", *overrides]


def counting_decode(rows: list, fail_on_call: int | None = None):
    """decode, counting the rows of each call; the call numbered fail_on_call (from 1) fails as a run
    killed there would stop."""
    def counted(engine, model, prompt_ids, settings, *args, **kwargs):
        if fail_on_call is not None and len(rows) + 1 == fail_on_call:
            raise RuntimeError("killed")
        rows.append(len(settings))
        return REAL_DECODE(engine, model, prompt_ids, settings, *args, **kwargs)
    return counted


def stopped_after_two_batches(overrides, run_dir, monkeypatch):
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode([], fail_on_call=3))
    with pytest.raises(RuntimeError, match="killed"):
        run_sweep(compose_config(*overrides), run_dir)
    return sorted(path.name for path in (run_dir / ".shards").glob("*.pt"))


def without_time(document: dict) -> dict:
    return {**document, "metadata": {k: v for k, v in document["metadata"].items() if k != "created"}}


def test_a_resumed_run_draws_only_what_is_missing_and_writes_the_uninterrupted_artifact(
        tiny_model_dir, tmp_path, monkeypatch):
    overrides = one_prompt(tiny_model_dir)
    run_sweep(compose_config(*overrides), tmp_path / "whole")
    stopped = tmp_path / "stopped"
    assert stopped_after_two_batches(overrides, stopped, monkeypatch) == [
        "000000000-000000001.pt", "000000002-000000003.pt"]
    assert not (stopped / "samples.json").exists()
    torn = stopped / ".shards" / ".000000004-000000005.pt.x1y2.tmp"  # a shard write killed half-way
    torn.write_bytes(b"PK\x03\x04 torn")
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode([], fail_on_call=1))
    with pytest.raises(RuntimeError, match="killed"):  # a restart stopped before its first batch
        run_sweep(compose_config(*overrides), stopped)
    assert not torn.exists()
    assert sorted(path.name for path in (stopped / ".shards").iterdir()) == [
        "000000000-000000001.pt", "000000002-000000003.pt"]
    rows = []
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode(rows))
    run_sweep(compose_config(*overrides), stopped)
    assert rows == [2, 2]  # samples 4 to 7 only
    assert not torn.exists() and not (stopped / ".shards").exists()
    assert without_time(artifact(stopped)) == without_time(artifact(tmp_path / "whole"))


def test_batch_size_null_on_the_cpu_draws_a_bounded_batch_at_a_time(tiny_model_dir, tmp_path, monkeypatch):
    rows = []
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode(rows))
    run_sweep(compose_config(f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=300", "max_length=4",
                             "print_samples=0"), tmp_path)
    assert rows == [128, 128, 44]
    assert artifact(tmp_path)["metadata"]["batch_size"] == 128


def test_shards_of_another_config_are_refused_unless_overwrite(tiny_model_dir, tmp_path, monkeypatch):
    overrides = one_prompt(tiny_model_dir)
    shards = stopped_after_two_batches(overrides, tmp_path, monkeypatch)
    with pytest.raises(UsageError, match=r"holds finished batches of another config \(seed: 0 -> 3\)"):
        run_sweep(compose_config(*overrides, "seed=3"), tmp_path)
    assert sorted(path.name for path in (tmp_path / ".shards").glob("*.pt")) == shards
    rows = []
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode(rows))
    run_sweep(compose_config(*overrides, "seed=3", "overwrite=true"), tmp_path)
    assert rows == [2, 2, 2, 2] and artifact(tmp_path)["metadata"]["seed"] == 3
    run_sweep(compose_config(*overrides, "seed=3", "overwrite=true"), tmp_path / "whole")
    assert without_time(artifact(tmp_path)) == without_time(artifact(tmp_path / "whole"))


def test_an_unreadable_shard_is_drawn_again(tiny_model_dir, tmp_path, monkeypatch, caplog):
    overrides = one_prompt(tiny_model_dir)
    stopped_after_two_batches(overrides, tmp_path, monkeypatch)
    (tmp_path / ".shards" / "000000002-000000003.pt").write_bytes(b"not a shard")
    rows = []
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode(rows))
    run_sweep(compose_config(*overrides), tmp_path)
    assert rows == [2, 2, 2]
    assert "000000002-000000003.pt cannot be read" in caplog.text
    assert len(artifact(tmp_path)["texts"]) == 8


@pytest.mark.slow
def test_a_study_killed_after_its_first_shard_resumes_to_the_uninterrupted_artifact(tiny_model_dir, tmp_path,
                                                                                   monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    overrides = [f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=4", f"prompts={prompts}",
                 "draws=2", "max_new_tokens=40", "batch_size=1", "print_samples=0"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(REPO / "run.py"), *overrides, f"hydra.run.dir={killed}"],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(killed.glob(".shards/*.pt")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list(killed.glob(".shards/*.pt")))
    assert 1 <= finished < 24 and not (killed / "samples.json").exists()

    rows = []
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode(rows))
    run_sweep(compose_config(*overrides), killed)  # the same command again, in-process
    assert sum(rows) == 24 - finished
    run_sweep(compose_config(*overrides), tmp_path / "whole")
    resumed, whole = artifact(killed), artifact(tmp_path / "whole")
    assert without_time(resumed) == without_time(whole)
    assert pq.read_table(killed / "samples.parquet").equals(pq.read_table(tmp_path / "whole" / "samples.parquet"))
    assert pq.read_table(killed / "samples.parquet").num_rows == 24
    assert sorted(p.name for p in killed.iterdir() if p.name.startswith(".") and p.name != ".hydra") == []


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_counts_samples_of_the_total_with_the_time_left(monkeypatch, caplog):
    monkeypatch.setattr(gpt2_sweep.runner.progress, "QUIET_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="gpt2_sweep.runner.progress"):
        progress = Progress(100, 20, stream=io.StringIO())  # 20 samples in the shards of a killed run
        for _ in range(16):
            progress.advance(5)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 8 and lines[0].startswith("Generated 30 of 100 samples (30%), ")
    assert all(line.endswith(" left") for line in lines) and lines[-1].startswith("Generated 100 of 100")
    terminal = Terminal()
    bar = Progress(100, 20, stream=terminal)
    bar.advance(12.5)
    bar.bar.refresh()  # tqdm redraws at most every 0.1 s
    assert "32%" in terminal.getvalue() and "32/100 samples" in terminal.getvalue()
    silent = Progress(100, 0, shown=False, stream=terminal)  # the other ranks
    assert silent.bar is None



def test_shards_of_an_older_version_resume_where_its_added_keys_are_at_their_defaults(tiny_model_dir, tmp_path,
                                                                                      monkeypatch):
    """Shards written before runtime.sampler existed: the same run at its default, so they are kept;
    with another value they are another config, named."""
    import json

    import torch

    overrides = one_prompt(tiny_model_dir)
    run_sweep(compose_config(*overrides), tmp_path / "whole")
    shards = stopped_after_two_batches(overrides, tmp_path / "run", monkeypatch)
    for name in shards:
        path = tmp_path / "run" / ".shards" / name
        shard = torch.load(path, weights_only=False)
        identity = json.loads(shard["identity"])
        del identity["config"]["runtime"]["sampler"]
        shard["identity"] = json.dumps(identity, sort_keys=True)
        torch.save(shard, path)
    with pytest.raises(UsageError, match=r"another config \(runtime.sampler: None -> 'sort'\)"):
        run_sweep(compose_config(*overrides, "runtime.sampler=sort"), tmp_path / "run")
    rows = []
    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", counting_decode(rows))
    run_sweep(compose_config(*overrides), tmp_path / "run")
    assert sum(rows) == 8 - 2 * len(shards)  # only what the old shards did not hold
    assert without_time(artifact(tmp_path / "run")) == without_time(artifact(tmp_path / "whole"))
