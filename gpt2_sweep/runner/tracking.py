"""A finished run logged to the tracker of logger=...: its config, the pooled metrics per setting and
the samples as a table, through the Lightning logger conf/logger/ names; a multirun's jobs grouped by
sweep dir."""
import logging
import math
import os
import re
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from ..analysis.load import AXES, load_samples
from ..analysis.pooled import MEASURE_COLUMNS, PooledTable, artifacts_measurable, pooled_tables
from ..analysis.tables import METRICS
from ..errors import TrackerFailed, UsageError
from .trackers import Tracker, logger_config, tracker_of

SAMPLE_COLUMNS = ("prompt_index", "draw", "sample", *AXES, *METRICS, "diverges_from", "prompt", "continuation")
TEXT_ROWS = 1000  # TensorBoard's text panel shows the samples table up to this many rows
MLFLOW_STORE = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"


def shown_path(path: Path) -> str:
    """path relative to the working dir where it lies under it, else absolute."""
    path = path.resolve()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_posix()


def group_dir(run_dir: Path, multirun: bool) -> Path:
    """The dir whose runs a tracker groups: a multirun's sweep dir, else the dir that holds the run dir."""
    if multirun:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().sweep.dir).resolve()
    return run_dir.resolve().parent


def runtime_arguments(tracker: Tracker, config: dict, group: Path, run_name: str, run_dir: Path | None) -> dict:
    """The logger's arguments that conf/logger/ leaves null, set for this run."""
    if tracker.choice in ("csv", "tensorboard"):
        return {"save_dir": str(run_dir)}
    if tracker.choice == "mlflow":
        arguments = {"experiment_name": shown_path(group), "run_name": run_name}
        if config.get("tracking_uri") is None:
            arguments |= {"tracking_uri": f"sqlite:///{group / MLFLOW_STORE}",
                          "artifact_location": (group / MLFLOW_ARTIFACTS).as_uri()}
        return arguments
    if tracker.choice == "wandb":
        return {"group": shown_path(group), "name": run_name, "save_dir": str(run_dir)}
    return {}


def logger_arguments(config: dict, group: Path, run_name: str, run_dir: Path | None = None) -> dict:
    """The logger config with its null arguments set for a run of the group."""
    tracker = tracker_of(config)
    if tracker is None:
        return config
    defaults = runtime_arguments(tracker, config, group, run_name, run_dir)
    return {**config, **{key: value for key, value in defaults.items() if config.get(key) is None}}


def open_logger(config: dict, run_dir: Path, multirun: bool) -> tuple[object, dict]:
    """The configured Lightning logger and its arguments, the null ones set for this run."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    tracker = tracker_of(config)
    group = group_dir(run_dir, multirun)
    run_name = run_dir.resolve().relative_to(group).as_posix() if run_dir.resolve().is_relative_to(group) \
        else run_dir.name
    config = logger_arguments(config, group, run_name, run_dir)
    if tracker is not None and tracker.choice == "wandb":
        os.environ.setdefault("WANDB_SILENT", "true")  # its banner would bury the run's own lines
    if tracker is not None and tracker.choice == "mlflow":
        create_experiment(config)
    try:
        logger = instantiate(config, _convert_="all")
    except InstantiationException as error:
        choice = tracker.choice if tracker else config["_target_"]
        raise UsageError(f"logger={choice}: {str(error).splitlines()[-1]}") from None
    if tracker is not None and tracker.choice == "wandb":
        logger._wandb_init.pop("anonymous", None)  # Lightning passes None, which wandb 0.31 warns of
    return logger, config


def prepare_sweep(config) -> None:
    """Before a multirun's first job: its MLflow experiment (and the default SQLite store) created
    once, since jobs run in parallel would each try to create them at the same time."""
    logger = logger_config(config)
    tracker = tracker_of(logger) if logger else None
    if tracker is None or tracker.choice != "mlflow":
        return
    group = Path(config.hydra.sweep.dir).resolve()
    group.mkdir(parents=True, exist_ok=True)
    create_experiment(logger_arguments(logger, group, run_name=""))


def create_experiment(arguments: dict) -> None:
    """The MLflow experiment of a run, created where the store has none of its name (with the store's
    artifact location; Lightning's logger would warn that it creates one); MLflow's INFO lines quiet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = mlflow.MlflowClient(arguments["tracking_uri"])
    if client.get_experiment_by_name(arguments["experiment_name"]) is None:
        try:
            client.create_experiment(arguments["experiment_name"], artifact_location=arguments.get("artifact_location"))
        except MlflowException:
            if client.get_experiment_by_name(arguments["experiment_name"]) is None:  # not another job's doing
                raise


def metric_name(text: str) -> str:
    """A method's or a table's name as a metric name every tracker takes: Sampling t=0.8 -> Sampling_t_0.8."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", text).strip("_")


def pooled_metrics(tables: list[PooledTable]) -> dict[str, float]:
    """Every number of the run's pooled tables (summary_pooled.csv's), as <method>/<column>; with
    several tables, <table>/<method>/<column>."""
    metrics = {}
    for table in tables:
        prefix = f"{metric_name(table.title)}/" if len(tables) > 1 else ""
        for row in table.table.to_dict("records"):
            for column, value in row.items():
                if column in ("method", "model", *AXES) or not isinstance(value, (int, float)):
                    continue
                if not math.isnan(value):
                    metrics[f"{prefix}{metric_name(row['method'])}/{column}"] = float(value)
    return metrics


def samples_table(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per sample: its prompt and draw, settings, metrics, where it departs, and its text."""
    columns = [column for column in SAMPLE_COLUMNS
               if column in samples and (column not in AXES or samples[column].notna().any())]
    table = samples[columns].copy()
    for column in ("prompt", "continuation"):
        if column in table:
            table[column] = table[column].fillna("").astype(str)
    return table


def markdown_table(table: pd.DataFrame) -> str:
    """The first TEXT_ROWS rows as a markdown table, for TensorBoard's text panel."""
    def cell(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return " ".join(str(value).splitlines()).replace("|", "\\|")  # any line break would end the row

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |"
              for row in table.head(TEXT_ROWS).itertuples(index=False)]
    if len(table) > TEXT_ROWS:
        lines += ["", f"The first {TEXT_ROWS:,} of {len(table):,} samples; the run dir's artifact has them all."]
    return "\n".join(lines)


def log_samples(logger, tracker: Tracker | None, arguments: dict, table: pd.DataFrame) -> str:
    """The samples table, each tracker's way; returns where it went."""
    choice = tracker.choice if tracker else None
    if choice == "csv":
        path = Path(logger.log_dir) / "samples.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False, encoding="utf-8")
        return str(Path(logger.log_dir))
    if choice == "tensorboard":
        logger.experiment.add_text("samples", markdown_table(table), global_step=0)
        logger.experiment.flush()
        return str(Path(logger.log_dir))
    if choice == "mlflow":
        logger.experiment.log_table(logger.run_id, data=table, artifact_file="samples_table.json")
        return f"experiment {arguments['experiment_name']!r}, run {logger.run_id} in {arguments['tracking_uri']}"
    if choice == "wandb":
        logger.log_table("samples", dataframe=table.astype(object).where(table.notna(), None))  # NA: W&B's None
        return str(Path(logger.experiment.dir).parent)
    return type(logger).__name__


def close(logger, tracker: Tracker | None) -> None:
    logger.finalize("success")
    if tracker is not None and tracker.choice == "wandb":
        logger.experiment.finish()


def log_run(cfg, run_dir: Path, multirun: bool) -> None:
    """Log a run whose artifact is written to the configured tracker (logger=none: nothing). A tracker
    that fails is one line (TrackerFailed); the artifact stays."""
    config = logger_config(cfg)
    if config is None:
        return
    tracker = tracker_of(config)
    choice = tracker.choice if tracker else config["_target_"]
    try:
        where = log_to(config, tracker, cfg, Path(run_dir), multirun)
    except UsageError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever the tracker raises, the samples are safe
        message = (str(error).strip().splitlines() or [""])[0]
        raise TrackerFailed(f"logger={choice} failed: {type(error).__name__}: {message} (the samples are in "
                            f"{run_dir}; the same command again logs them)") from error
    sync = f" (wandb sync {where} uploads it)" if choice == "wandb" and config.get("offline") else ""
    print(f"Logged to {choice}: {where}{sync}")


def log_to(config: dict, tracker: Tracker | None, cfg, run_dir: Path, multirun: bool) -> str:
    """log_run's logging; returns where the run went."""
    logger, arguments = open_logger(config, run_dir, multirun)
    measured = artifacts_measurable(run_dir)
    samples = load_samples(run_dir, tokens=MEASURE_COLUMNS if measured else ())
    metrics = pooled_metrics(pooled_tables(samples, measured))
    hyperparameters = OmegaConf.to_container(cfg, resolve=True)
    if tracker is not None and tracker.choice == "tensorboard":  # its HParams panel pairs them with metrics
        logger.log_hyperparams(hyperparameters, metrics)
    else:
        logger.log_hyperparams(hyperparameters)
        logger.log_metrics(metrics, step=0)
    where = log_samples(logger, tracker, arguments, samples_table(samples))
    close(logger, tracker)
    return where
