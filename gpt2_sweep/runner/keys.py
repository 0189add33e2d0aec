"""The keys a run reads: those of the primary config composed without overrides.

Any other key, a typo on the command line (+num_sample=4) or an extra key in a config file, would be
stored and silently ignored, so it is refused.
"""
import difflib
import functools
from pathlib import Path

from omegaconf import DictConfig

from ..errors import UsageError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
CONFIG_NAME = "config"
GROUPS = ("model", "sampler", "devices", "prompt_set")  # nodes whose inner keys are checked too


def dotted_keys(cfg) -> set[str]:
    """Top-level keys and those inside the groups, dotted (model.name); Hydra's own node left out."""
    keys = set()
    for key in cfg:
        if key == "hydra":
            continue
        keys.add(key)
        if key in GROUPS and isinstance(cfg[key], DictConfig):
            keys |= {f"{key}.{inner}" for inner in cfg[key]}
    return keys


@functools.cache  # the same in every job of a multirun
def composed_defaults() -> DictConfig:
    """The primary config composed without overrides: inside the app with its own search path."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name=CONFIG_NAME)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=CONFIG_NAME)


def known_keys() -> frozenset[str]:
    return frozenset(dotted_keys(composed_defaults()))


def default_config() -> dict:
    """The defaults resolved, Hydra's node left out: what a key added to the package since an
    artifact was written defaults to."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(composed_defaults(), resolve=True)


def unknown_key_error(keys: list[str], known) -> UsageError:
    def hint(key: str) -> str:
        parent, _, name = key.rpartition(".")
        siblings = sorted(k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent)
        match = difflib.get_close_matches(name, siblings, n=1)
        return f"did you mean {parent + '.' if parent else ''}{match[0]}?" if match else "the run does not read it"

    if len(keys) == 1:
        return UsageError(f"unknown key {keys[0]}: {hint(keys[0])} (python run.py --help lists the options)")
    return UsageError("unknown keys " + ", ".join(f"{key} ({hint(key)})" for key in keys)
                      + ": python run.py --help lists the options")


def check_keys(cfg) -> None:
    """Raise UsageError naming every key of cfg the run does not read."""
    known = known_keys()
    unknown = sorted(dotted_keys(cfg) - known)
    if unknown:
        raise unknown_key_error(unknown, known)
