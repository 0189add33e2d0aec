"""The experiment tracker a config's logger=... names (conf/logger/), whether its packages are installed
(without importing them) and whether its class takes the config's keys: checked before the model loads."""
import difflib
import importlib.util
import inspect
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
INSTANTIATE_KEYS = {"_target_", "_convert_", "_recursive_", "_partial_", "_args_"}  # hydra.utils.instantiate's own


def logger_config(cfg) -> dict | None:
    """The logger node as a dict; None for logger=none."""
    node = cfg.get("logger")
    return OmegaConf.to_container(node, resolve=True) if node else None


def tracker_of(config: dict) -> Tracker | None:
    """The tracker of a logger config; None for a logger class of the user's own."""
    return TRACKERS.get(str(config.get("_target_", "")).rpartition(".")[2])


def check_logger(cfg) -> None:
    """The configured tracker's packages are installed: one line naming its extra otherwise."""
    node = cfg.get("logger")
    if not node:
        return
    # Only the keys read here are resolved: a ${hydra:job.num} in another resolves only inside a job.
    config = {key: node[key] for key in ("_target_", "tracking_uri") if key in node}
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


def check_logger_keys(cfg) -> None:
    """Every key of the logger config is a parameter of its _target_'s constructor: one line naming the
    first that is not, and what it takes. A class that takes **kwargs takes any key, so nothing is said
    of those (TensorBoardLogger passes them to SummaryWriter, WandbLogger to wandb.init). Imports the
    class: Lightning's take seconds."""
    from hydra._internal.utils import _locate  # what instantiate imports the _target_ with

    config = logger_config(cfg)
    if config is None or not config.get("_target_"):
        return
    target = str(config["_target_"])
    try:
        constructor = _locate(target)
    except (ImportError, ValueError) as error:
        raise UsageError(f"logger._target_={target!r} cannot be imported: {str(error).splitlines()[-1]} "
                         "(conf/logger/ names Lightning's: logger=csv, tensorboard, mlflow or wandb)") from None
    try:
        parameters = inspect.signature(constructor).parameters
    except (TypeError, ValueError):  # a callable whose signature Python cannot read
        return
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return
    keywords = [name for name, parameter in parameters.items()
                if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for key in config:
        if key not in keywords and key not in INSTANTIATE_KEYS:
            raise unknown_logger_key(key, target, keywords)


def unknown_logger_key(key: str, target: str, parameters: list[str]) -> UsageError:
    match = difflib.get_close_matches(key, parameters, n=1)
    takes = f"{target.rpartition('.')[2]} takes {', '.join(parameters)}"
    if match:
        return UsageError(f"unknown key logger.{key}: did you mean logger.{match[0]}? ({takes})")
    return UsageError(f"unknown key logger.{key}: {takes}")


class SweepTracker(Callback):
    """Before a multirun's first job, what its jobs would otherwise race to create: the tracker's store
    and the experiment that groups them."""

    def on_multirun_start(self, config, **kwargs) -> None:
        if logger_config(config) is None:
            return
        from .tracking import prepare_sweep  # MLflow and pandas take seconds to import

        with usage_errors_as_one_line():
            prepare_sweep(config)
