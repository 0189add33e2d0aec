"""Checks that need neither torch nor the model: bad input is reported before the seconds of imports."""
from hydra.experimental.callback import Callback

from .cli import usage_errors_as_one_line
from .keys import check_keys


def check_before_loading(cfg) -> None:
    check_keys(cfg)


class MultirunChecks(Callback):
    """Before a multirun's first job: bad input that all its jobs would share is refused once."""

    def on_multirun_start(self, config, **kwargs) -> None:
        with usage_errors_as_one_line():  # Hydra would turn an exception raised here into a warning
            check_keys(config)
