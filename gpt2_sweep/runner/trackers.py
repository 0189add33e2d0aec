"""The experiment tracker a config's logger=... names (conf/logger/), and whether its packages are
installed: checked before the model loads, without importing them."""
import importlib.util
from dataclasses import dataclass

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from ..errors import UsageError
from .cli import usage_errors_as_one_line


@dataclass(frozen=True)
class Tracker:
    choice: str                # logger=<choice>
    modules: tuple[str, ...]   # what it imports
    extra: str | None          # the pyproject.toml extra that installs them


TRACKERS = {  # by the Lightning logger class of the config's _target_
    "CSVLogger": Tracker("csv", (), None),
    "TensorBoardLogger": Tracker("tensorboard", ("tensorboard",), "tensorboard"),
    "MLFlowLogger": Tracker("mlflow", ("mlflow",), "mlflow"),
    "WandbLogger": Tracker("wandb", ("wandb",), "wandb"),
}
SQLITE_MODULES = ("sqlalchemy", "alembic")  # MLflow's SQLite store, the default one


def logger_config(cfg) -> dict | None:
    """The logger node as a dict; None for logger=none."""
    node = cfg.get("logger")
    return OmegaConf.to_container(node, resolve=True) if node else None


def tracker_of(config: dict) -> Tracker | None:
    """The tracker of a logger config; None for a logger class of the user's own."""
    return TRACKERS.get(str(config.get("_target_", "")).rpartition(".")[2])


def check_logger(cfg) -> None:
    """The configured tracker's packages are installed: one line naming its extra otherwise."""
    config = logger_config(cfg)
    if config is None:
        return
    if not config.get("_target_"):
        raise UsageError("logger needs a _target_, a Lightning logger class: logger=csv, tensorboard, mlflow or wandb")
    tracker = tracker_of(config)
    if tracker is None:
        return
    modules = tracker.modules
    if tracker.choice == "mlflow" and str(config.get("tracking_uri") or "sqlite:").startswith("sqlite:"):
        modules += SQLITE_MODULES
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        raise UsageError(f"logger={tracker.choice} needs {' and '.join(missing)}: pip install -e '.[{tracker.extra}]' "
                         "in the checkout (the tested versions, pinned in pyproject.toml)")


class SweepTracker(Callback):
    """Before a multirun's first job, what its jobs would otherwise race to create: the tracker's store
    and the experiment that groups them."""

    def on_multirun_start(self, config, **kwargs) -> None:
        if logger_config(config) is None:
            return
        from .tracking import prepare_sweep  # MLflow and pandas take seconds to import

        with usage_errors_as_one_line():
            prepare_sweep(config)
