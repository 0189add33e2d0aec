"""The artifact's contract: a failed write leaves the previous one whole, a killed run's temporary
files go, and a rerun with any changed key (nested ones included) is never taken for the same run."""
import errno
import os

import pytest

from conftest import artifact, compose_config
from gpt2_sweep.artifact import config_differences, write_json_atomic
from gpt2_sweep.errors import UsageError
from gpt2_sweep.sweep import run_sweep

PREVIOUS = {"metadata": {"seed": 0}, "texts": [{"text": "the previous artifact"}]}


class Unserialisable:
    """json.dump raises on it after it has written what comes before."""


def fails_while_serialising(monkeypatch):
    return {"metadata": {"seed": 1}, "texts": [{"text": "x" * 100_000}, Unserialisable()]}


def fails_on_a_full_disk(monkeypatch):
    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", no_space)
    return {"metadata": {"seed": 1}, "texts": [{"text": "a complete new document"}]}


@pytest.mark.parametrize("failing_write", [fails_while_serialising, fails_on_a_full_disk])
def test_a_write_that_fails_half_way_leaves_the_previous_artifact_and_no_temporary_file(tmp_path, monkeypatch,
                                                                                      failing_write):
    path = tmp_path / "samples.json"
    write_json_atomic(path, PREVIOUS)
    before = path.read_bytes()
    document = failing_write(monkeypatch)
    with pytest.raises((TypeError, OSError)):
        write_json_atomic(path, document)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.json"]


def test_config_differences_name_nested_keys_dotted():
    old = {"seed": 0, "sampler": {"temperature": True, "temperature_range": [0.0, 1.2]}}
    new = {"seed": 0, "sampler": {"temperature": True, "temperature_range": [0.5, 1.2]}}
    assert config_differences(old, new) == ["sampler.temperature_range: [0.0, 1.2] -> [0.5, 1.2]"]
    assert config_differences(old, old) == []


def test_a_rerun_with_a_changed_nested_key_is_refused_not_skipped(tiny_model_dir, tmp_path):
    base = [f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=2", "max_length=6"]
    run_sweep(compose_config(*base), tmp_path)
    before = artifact(tmp_path)
    with pytest.raises(UsageError, match=r"sampler\.temperature_range: \[0\.0, 1\.2\] -> \[0\.5, 1\.0\]"):
        run_sweep(compose_config(*base, "sampler.temperature_range=[0.5,1.0]"), tmp_path)
    assert artifact(tmp_path) == before


def test_a_run_removes_the_temporary_files_a_killed_run_left(tiny_model_dir, tmp_path):
    leftovers = [tmp_path / ".samples.json.k1ll3d.tmp", tmp_path / ".ranks-0" / "rank-0.json"]
    for path in leftovers:
        path.parent.mkdir(exist_ok=True)
        path.write_text("{half", encoding="utf-8")
    run_sweep(compose_config(f"model.name={tiny_model_dir}", "num_samples=1", "max_length=4"), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.json"]
