"""The console keeps to the run's own output: library banners, INFO records and warnings quiet, ours one
line on stderr."""
import logging
import warnings

# Loggers of Lightning's banners (GPU available..., Initializing distributed..., distributed_backend=...):
# Lightning sets the level of its top loggers itself when imported, so these below them are set.
BANNER_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                  "lightning.fabric.utilities.distributed", "lightning.pytorch.accelerators.cuda",
                  "lightning.pytorch.trainer.connectors.signal_connector")  # "Received SIGTERM": we say it
# A DDP rank that SIGTERM stopped: "Terminating process ... via signal SIGTERM" (a warning); we say it.
QUIET_LOGGERS = ("torch.multiprocessing.spawn",)
LIBRARY_WARNINGS = (".*does not have many workers.*", ".*treespec.*")


OWN_LOGGER = "gpt2_sweep"


class OwnInfoOnly(logging.Filter):
    """The console's filter: INFO and below from our loggers only (a library's INFO records, such as
    torch's FakeTensor cache stats at exit, which reach the root logger when a Ctrl-C cut torch's import
    short before it set up its own logging, stay in run.log); warnings and errors from anyone."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.levelno >= logging.WARNING or record.name == OWN_LOGGER
                or record.name.startswith(OWN_LOGGER + "."))


class ConsoleFormatter(logging.Formatter):
    """'warning: message', without a time or the logger's name (run.log keeps both)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def quiet_libraries() -> None:
    """Keep the console to the run's own output and Lightning's progress bar, in this process (each
    DDP rank calls it too, when it imports the Lightning module)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    for name in BANNER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
