"""logger=csv|tensorboard|mlflow|wandb: each run's config, pooled metrics per setting and samples table,
read back from the tracker's local store; a multirun's jobs grouped by sweep dir."""
import csv
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_app, run_cli
from gpt2_sweep.analysis.summary import summarize

RUN = ("sampler=temperature", "num_samples=3", "max_length=6")


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def summary_pooled(directory) -> dict[str, dict]:
    """The summary's pooled rows of a run dir (summary_pooled.csv), by method."""
    summarize(Path(directory))
    return {row["method"]: row for row in read_csv(Path(directory) / "summary_pooled.csv")}


def test_csv_logs_the_config_the_pooled_metrics_and_the_samples(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    first = run_app(f"model.name={tiny_model_dir}", *RUN, "seed=3", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr
    assert not (run_dir / "csv").exists()  # logger=none, the default
    # The logger leaves the samples as they are: the run is skipped, and logged.
    result = run_app(f"model.name={tiny_model_dir}", *RUN, "seed=3", "logger=csv", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert "Skipped" in result.stdout
    assert f"Logged to csv: {run_dir / 'csv'}" in result.stdout
    config = yaml.safe_load((run_dir / "csv" / "hparams.yaml").read_text(encoding="utf-8"))
    assert (config["seed"], config["num_samples"], config["model"]["name"]) == (3, 3, str(tiny_model_dir))
    [metrics] = read_csv(run_dir / "csv" / "metrics.csv")
    pooled = summary_pooled(run_dir)
    assert set(pooled) == {"Greedy", "Sampling t=0.6", "Sampling t=1.2"}
    for method, name in (("Greedy", "Greedy"), ("Sampling t=1.2", "Sampling_t_1.2")):
        for column in ("corpus_perplexity", "distinct_2", "n"):
            assert float(metrics[f"{name}/{column}"]) == pytest.approx(float(pooled[method][column]), rel=1e-12)
    samples = read_csv(run_dir / "csv" / "samples.csv")
    assert [row["temperature"] for row in samples] == ["0.0", "0.6", "1.2"]
    stored = json.loads((run_dir / "samples.json").read_text(encoding="utf-8"))["texts"]
    assert [row["continuation"] for row in samples] == [text["continuation"] for text in stored]


def tensorboard_events(directory: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    return events


def test_tensorboard_logs_hparams_scalars_and_the_samples_as_text(tiny_model_dir, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    run_dir = tmp_path / "run"
    result = run_app(f"model.name={tiny_model_dir}", *RUN, "seed=5", "logger=tensorboard", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    events = tensorboard_events(run_dir / "tensorboard")
    hparams = HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info.hparams
    assert hparams["seed"].number_value == 5
    assert hparams["model/name"].string_value == str(tiny_model_dir)
    pooled = summary_pooled(run_dir)
    [point] = events.Scalars("Sampling_t_0.6/perplexity")
    assert point.value == pytest.approx(float(pooled["Sampling t=0.6"]["perplexity"]), rel=1e-6)
    [text] = events.Tensors("samples/text_summary")
    table = text.tensor_proto.string_val[0].decode("utf-8").splitlines()
    assert table[0].startswith("| prompt_index | draw | sample | temperature | nucleus |")
    assert len(table) == 2 + 3  # the header, its rule, one row per sample


@pytest.mark.slow
def test_mlflow_puts_a_multiruns_jobs_in_one_experiment_of_a_local_store(tiny_model_dir, tmp_path):
    """The jobs run in parallel (joblib): the store and experiment are created once, before them."""
    pytest.importorskip("mlflow")
    import mlflow

    sweep_dir = tmp_path / "sweep"
    result = run_app("-m", f"model.name={tiny_model_dir}", *RUN, "seed=0,1", "logger=mlflow",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr  # nor MLflow's and Lightning's notes on creating the store
    assert "warning" not in result.stderr.lower()
    client = mlflow.MlflowClient(f"sqlite:///{sweep_dir / 'mlflow.db'}")
    [experiment] = [found for found in client.search_experiments() if found.name != "Default"]
    assert experiment.name == str(sweep_dir)
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["0", "1"]
    for job, seed in (("0", 0), ("1", 1)):
        run = runs[job]
        assert run.data.params["seed"] == str(seed)
        assert run.data.params["sampler/temperature"] == "True"
        pooled = summary_pooled(sweep_dir / job)
        assert run.data.metrics["Sampling_t_1.2/perplexity"] == pytest.approx(
            float(pooled["Sampling t=1.2"]["perplexity"]), rel=1e-12)
        downloaded = client.download_artifacts(run.info.run_id, "samples_table.json", str(tmp_path / job))
        table = json.loads(Path(downloaded).read_text(encoding="utf-8"))  # log_table's format
        temperatures = [row[table["columns"].index("temperature")] for row in table["data"]]
        assert temperatures == pytest.approx([0.0, 0.6, 1.2])
        assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(sweep_dir / "mlartifacts")


def wandb_records(path: Path):
    """The records of an offline run's .wandb file: a header, then LevelDB-log blocks of 32 KiB, each
    record a 7-byte header (CRC, length, type: 1 whole, 2 first, 3 middle, 4 last) and its bytes."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, block, payload = 7, 32768, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # the block's tail is padding
            position += block - position % block
            continue
        length, kind = int.from_bytes(data[position + 4:position + 6], "little"), data[position + 6]
        payload += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            yield Record.FromString(payload)
            payload = b""


def wandb_run(run_dir: Path) -> dict:
    """An offline W&B run's group, name, config, logged metrics and samples table."""
    [offline] = (run_dir / "wandb").glob("offline-run-*")
    run = {"config": {}, "metrics": {}}
    for record in wandb_records(next(offline.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run |= {"group": record.run.run_group, "name": record.run.display_name}
        elif kind == "config":
            run["config"] |= {item.key: json.loads(item.value_json) for item in record.config.update}
        elif kind == "history":
            run["metrics"] |= {"/".join(item.nested_key) or item.key: json.loads(item.value_json)
                               for item in record.history.item}
    table_path = offline / "files" / run["metrics"]["samples/path"]
    run["table"] = json.loads(table_path.read_text(encoding="utf-8"))
    return run


@pytest.mark.slow
def test_wandb_offline_puts_a_multiruns_jobs_in_one_group(tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))  # nothing of W&B's outside tmp_path
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-home"))
    sweep_dir = tmp_path / "sweep"
    result = run_app("-m", f"model.name={tiny_model_dir}", *RUN, "seed=0,1", "logger=wandb",
                     f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for job, seed in (("0", 0), ("1", 1)):
        run = wandb_run(sweep_dir / job)
        assert (run["group"], run["name"]) == (str(sweep_dir), job)
        assert run["config"]["seed"] == seed and run["config"]["sampler"]["temperature"] is True
        pooled = summary_pooled(sweep_dir / job)
        assert run["metrics"]["Greedy/distinct_1"] == pytest.approx(float(pooled["Greedy"]["distinct_1"]), rel=1e-12)
        assert len(run["table"]["data"]) == 3
        assert run["table"]["columns"][:5] == ["prompt_index", "draw", "sample", "temperature", "nucleus"]


@pytest.mark.parametrize("choice, module, extra", [("mlflow", "mlflow", "mlflow"), ("wandb", "wandb", "wandb"),
                                                    ("tensorboard", "tensorboard", "tensorboard")])
def test_a_tracker_that_is_not_installed_is_one_line_before_the_model_loads(choice, module, extra, tmp_path,
                                                                           monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails, as where the package is missing
    missing_model = tmp_path / "no-such-model"
    result = run_app(f"model.name={missing_model}", f"logger={choice}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert result.stderr == (f"error: logger={choice} needs {module}: pip install -e '.[{extra}]' in the checkout "
                             "(the tested versions, pinned in pyproject.toml)\n")
    assert not (tmp_path / "run").exists()
    multirun = run_app("-m", f"model.name={missing_model}", f"logger={choice}", "seed=0,1",
                       f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert multirun.returncode == 2
    assert multirun.stderr.count(f"error: logger={choice} needs {module}") == 1  # once, before the first job
    assert not list(tmp_path.glob("sweep/*/samples.json"))


def test_a_tracker_that_fails_is_one_line_and_the_same_command_logs_the_samples_kept(tiny_model_dir, tmp_path):
    run_dir, blocked = tmp_path / "run", tmp_path / "a-file"
    blocked.write_text("not a dir")
    failed = run_app(f"model.name={tiny_model_dir}", *RUN, "logger=csv", f"logger.save_dir={blocked / 'logs'}",
                     f"hydra.run.dir={run_dir}")
    assert failed.returncode == 1
    [line] = failed.stderr.splitlines()
    assert line.startswith("error: logger=csv failed: ") and "a-file" in line
    assert line.endswith(f"(the samples are in {run_dir}; the same command again logs them)")
    assert (run_dir / "samples.json").exists()
    again = run_app(f"model.name={tiny_model_dir}", *RUN, "logger=csv", f"hydra.run.dir={run_dir}")
    assert again.returncode == 0, again.stderr
    assert "Skipped" in again.stdout and len(read_csv(run_dir / "csv" / "samples.csv")) == 3


def without(module: str, directory: Path) -> dict:
    """The environment of a subprocess that cannot import module, as where it is not installed."""
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n", encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))}


def test_a_swept_tracker_that_is_not_installed_is_refused_before_the_first_job(tiny_model_dir, tmp_path):
    """logger=csv,wandb: not the csv job first and wandb's refusal after it."""
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", f"model.name={tiny_model_dir}", *RUN, "logger=csv,wandb", f"hydra.sweep.dir={sweep_dir}",
                     env=without("wandb", tmp_path / "site"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == ("error: logger=wandb needs wandb: pip install -e '.[wandb]' in the checkout "
                             "(the tested versions, pinned in pyproject.toml)\n")
    assert not sweep_dir.exists()


def test_a_swept_tracker_with_a_key_that_resolves_in_each_job_is_checked_before_the_first_job(tmp_path,
                                                                                              monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    result = run_app("-m", f"model.name={tmp_path / 'no-such-model'}", "logger=csv,wandb",
                     "++logger.name=job_${hydra:job.num}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 2
    assert result.stderr == ("error: logger=wandb needs wandb: pip install -e '.[wandb]' in the checkout "
                             "(the tested versions, pinned in pyproject.toml)\n")
    assert not (tmp_path / "sweep").exists()


def test_a_tracker_the_sweepers_params_choose_is_checked_before_the_first_job(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    result = run_app("-m", "+experiment=batch_study", "hydra.sweeper.params.model=gpt2",
                     "+hydra.sweeper.params.logger='csv,mlflow'", f"model.name={tmp_path / 'no-such-model'}",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 2
    assert result.stderr == ("error: logger=mlflow needs mlflow: pip install -e '.[mlflow]' in the checkout "
                             "(the tested versions, pinned in pyproject.toml)\n")
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_a_key_set_for_a_swept_logger_reaches_each_job(tiny_model_dir, tmp_path):
    """++logger.version=v1 with logger=csv,tensorboard: the multirun's own config has no logger to check."""
    sweep_dir = tmp_path / "sweep"
    result = run_app("-m", f"model.name={tiny_model_dir}", *RUN, "logger=csv,tensorboard", "++logger.version=v1",
                     f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 0, result.stderr
    assert len(read_csv(sweep_dir / "0" / "csv" / "v1" / "samples.csv")) == 3
    assert list((sweep_dir / "1" / "tensorboard" / "v1").glob("events.out.tfevents.*"))


def test_an_unknown_logger_key_is_one_line_before_the_samples_are_drawn_and_no_run_dir(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_app(f"model.name={tiny_model_dir}", *RUN, "logger=csv", "+logger.verison=v1",
                     f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    assert result.stderr == ("error: unknown key logger.verison: did you mean logger.version? (CSVLogger takes "
                             "save_dir, name, version, prefix, flush_logs_every_n_steps)\n")
    assert not run_dir.exists()
