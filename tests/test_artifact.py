"""The artifact's contract: a failed write leaves the previous one whole, a killed run's temporary
files go, and a rerun with any changed key (nested ones included) is never taken for the same run."""
import errno
import json
import os
import platform
from importlib import metadata

import pytest

from conftest import artifact, compose_config
from gpt2_sweep.artifact import (config_differences, holds_artifact_of, library_versions, read_artifact, sample_settings,
                                 write_json_atomic)
from gpt2_sweep.errors import DiskFull, UsageError
from gpt2_sweep.runner.sweep import run_sweep

PREVIOUS = {"metadata": {"seed": 0}, "texts": [{"text": "the previous artifact"}]}
PREVIOUS_DIR = []


class Unserialisable:
    """json.dump raises on it after it has written what comes before."""


def fails_while_serialising(monkeypatch):
    return {"metadata": {"seed": 1}, "texts": [{"text": "x" * 100_000}, Unserialisable()]}


def fails_on_a_full_disk(monkeypatch):
    def no_space(descriptor):
        written = os.readlink(f"/proc/self/fd/{descriptor}")  # a hidden temporary file beside the artifact
        assert os.path.dirname(written) == str(PREVIOUS_DIR[0])
        assert os.path.basename(written).startswith(".samples.json.") and written.endswith(".tmp")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", no_space)
    return {"metadata": {"seed": 1}, "texts": [{"text": "a complete new document"}]}


@pytest.mark.parametrize("failing_write", [fails_while_serialising, fails_on_a_full_disk])
def test_a_write_that_fails_half_way_leaves_the_previous_artifact_and_no_temporary_file(tmp_path, monkeypatch,
                                                                                      failing_write):
    path = tmp_path / "samples.json"
    PREVIOUS_DIR[:] = [tmp_path]
    write_json_atomic(path, PREVIOUS)
    before = path.read_bytes()
    document = failing_write(monkeypatch)
    with pytest.raises((TypeError, DiskFull)):
        write_json_atomic(path, document)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.json"]


def test_config_differences_name_nested_keys_dotted():
    old = {"seed": 0, "sampler": {"temperature": True, "temperature_range": [0.0, 1.2]}}
    new = {"seed": 0, "sampler": {"temperature": True, "temperature_range": [0.5, 1.2]}}
    assert config_differences(old, new) == ["sampler.temperature_range: [0.0, 1.2] -> [0.5, 1.2]"]
    assert config_differences(old, old) == []
    more = {"batch_size": 4, "sampler": {"temperature": False, "temperature_range": [0.0, 1.2]}, "new": {"key": 1}}
    assert config_differences(old, more) == ["batch_size: None -> 4", "new: None -> {'key': 1}",
                                             "sampler.temperature: True -> False", "seed: 0 -> None"]


def test_an_artifact_of_another_config_is_refused_naming_three_differences_an_equal_one_kept(tmp_path):
    path = tmp_path / "samples.json"
    config = {"a": 1, "b": 1, "c": 1, "d": 1, "overwrite": False, "print_samples": 4}
    write_json_atomic(path, {"metadata": {"config": config}, "texts": []})
    assert holds_artifact_of(path, {**config, "overwrite": True, "print_samples": 0}) is True
    with pytest.raises(UsageError) as three:
        holds_artifact_of(path, {**config, "a": 2, "b": 2, "c": 2})
    assert str(three.value) == (f"{path} holds the samples of another config (a: 1 -> 2; b: 1 -> 2; c: 1 -> 2): "
                                "overwrite=true replaces them, or choose another hydra.run.dir / hydra.sweep.dir")
    with pytest.raises(UsageError, match=r"\(a: 1 -> 2; b: 1 -> 2; c: 1 -> 2; \.\.\.\)"):
        holds_artifact_of(path, {**config, "a": 2, "b": 2, "c": 2, "d": 2})
    assert holds_artifact_of(tmp_path / "none.json", config) is False
    write_json_atomic(path, {"metadata": {"config": {"a": 1}}, "texts": []})  # a config without those keys
    assert holds_artifact_of(path, {"a": 1, "overwrite": False}) is True


def test_what_is_not_an_artifact_reads_as_none_and_a_sample_keeps_only_its_settings(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps(["metadata", "texts"]), encoding="utf-8")
    (tmp_path / "half.json").write_text('{"metadata": {', encoding="utf-8")
    assert read_artifact(tmp_path / "list.json") is None and read_artifact(tmp_path / "half.json") is None
    assert sample_settings({"temperature": 0.5, "nucleus": 1.0, "top_k": 3, "text": "t", "tokens": [1],
                            "metrics": {}}) == {"temperature": 0.5, "nucleus": 1.0, "top_k": 3}
    versions = library_versions()
    assert versions["python"] == platform.python_version() and versions["torch"] == metadata.version("torch")


def test_an_artifact_is_written_into_missing_directories_in_utf_8(tmp_path):
    path = tmp_path / "a" / "b" / "samples.json"
    write_json_atomic(path, {"texts": ["日本語 🦊"]})
    assert json.loads(path.read_bytes().decode("utf-8")) == {"texts": ["日本語 🦊"]}
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_a_rerun_with_a_changed_nested_key_is_refused_not_skipped(tiny_model_dir, tmp_path):
    base = [f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=2", "max_length=6"]
    run_sweep(compose_config(*base), tmp_path)
    before = artifact(tmp_path)
    with pytest.raises(UsageError, match=r"sampler\.temperature_range: \[0\.0, 1\.2\] -> \[0\.5, 1\.0\]"):
        run_sweep(compose_config(*base, "sampler.temperature_range=[0.5,1.0]"), tmp_path)
    assert artifact(tmp_path) == before


def test_a_run_removes_the_temporary_files_a_killed_run_left(tiny_model_dir, tmp_path):
    leftovers = [tmp_path / ".samples.json.k1ll3d.tmp", tmp_path / ".shards" / ".000000000-000000003.pt.k1ll3d.tmp"]
    for path in leftovers:
        path.parent.mkdir(exist_ok=True)
        path.write_text("{half", encoding="utf-8")
    run_sweep(compose_config(f"model.name={tiny_model_dir}", "num_samples=1", "max_length=4"), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "samples.json"]


def test_an_artifact_written_before_a_key_was_added_still_matches_its_config(tiny_model_dir, tmp_path, capsys):
    """An older version's artifact lacks the keys added since (draws, prompt_set, runtime.sampler, ...):
    at their defaults they leave the samples as the old version drew them, so a rerun is skipped;
    set otherwise they are a difference, named."""
    overrides = [f"model.name={tiny_model_dir}", "num_samples=2", "max_length=6"]
    artifact_path = run_sweep(compose_config(*overrides), tmp_path)
    document = json.loads(artifact_path.read_text())
    for key in ("draws", "prompt_set", "max_new_tokens"):
        del document["metadata"]["config"][key]
    del document["metadata"]["config"]["runtime"]["sampler"]
    artifact_path.write_text(json.dumps(document))
    capsys.readouterr()
    run_sweep(compose_config(*overrides), tmp_path)
    assert capsys.readouterr().out.startswith("Skipped:")
    with pytest.raises(UsageError, match=r"another config \(draws: None -> 2\)"):
        run_sweep(compose_config(*overrides, "draws=2"), tmp_path)
    with pytest.raises(UsageError, match=r"another config \(runtime.sampler: None -> 'sort'\)"):
        run_sweep(compose_config(*overrides, "runtime.sampler=sort"), tmp_path)
