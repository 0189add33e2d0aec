"""Whole runs in-process: the config composed as run.py composes it, then run_sweep, as the CLI calls it."""
from conftest import artifact, compose_config
from gpt2_sweep.schedules import BOTH_OFF_WARNING
from gpt2_sweep.sweep import run_sweep


def test_both_sweeps_off_gives_num_samples_identical_samples_with_a_warning(tiny_model_dir, tmp_path, caplog):
    """As the original script did: `python run.py` writes 4 samples."""
    run_sweep(compose_config(f"model.name={tiny_model_dir}", "max_length=12"), tmp_path)
    document = artifact(tmp_path)
    assert document["metadata"]["num_samples"] == 4 and len(document["texts"]) == 4
    assert {(s["temperature"], s["nucleus"]) for s in document["texts"]} == {(1.0, 1.0)}
    assert len({tuple(s["tokens"]) for s in document["texts"]}) == 1
    assert BOTH_OFF_WARNING.format(num_samples=4) in caplog.text
