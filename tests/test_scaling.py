"""Multiruns on Hydra's launcher plugins and with DDP inside their jobs: the same artifacts."""
import json

import pytest

from conftest import compose_config, run_app, run_cli

SWEEP = ["sampler=temperature", "seed=0,1", "num_samples=3", "max_length=10"]


def job_texts(sweep_dir):
    return {job.name: json.loads((job / "samples.json").read_text())["texts"]
            for job in sorted(sweep_dir.iterdir()) if job.is_dir() and job.name.isdigit()}


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory, tiny_model_dir):
    sweep_dir = tmp_path_factory.mktemp("basic")
    result = run_app("-m", f"model.name={tiny_model_dir}", *SWEEP, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr
    return job_texts(sweep_dir)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    ["hydra/launcher=submitit_local"],
    ["devices=ddp", "devices.accelerator=cpu", "devices.ids=2", "batch_size=1"],  # DDP inside each job
], ids=["joblib", "submitit_local", "ddp_in_multirun"])
def test_each_job_writes_the_artifact_of_the_basic_launcher(basic_sweep, tiny_model_dir, tmp_path, launcher):
    result = run_cli("-m", f"model.name={tiny_model_dir}", *SWEEP, *launcher, f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    if "devices=ddp" in launcher:  # spawned ranks must not start multiruns of their own
        assert result.stdout.count("Launching 2 jobs locally") == 1
    assert job_texts(tmp_path) == basic_sweep
    assert (tmp_path / "summary.csv").exists()


def test_the_slurm_example_sets_gpus_time_limit_and_partition():
    cfg = compose_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu", hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
