"""A run refused for bad input, or interrupted, leaves no run dir behind: the dir Hydra created for
it, while it holds only Hydra's own files, is removed again. A dir that existed before is never touched."""
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from hydra.experimental.callback import Callback

from ..errors import UsageError
from .interrupts import when_interrupted

HYDRA_FILES = {"config.yaml", "hydra.yaml", "overrides.yaml"}
_new_run_dirs: dict[Path, Path] = {}  # a run dir Hydra is about to create -> its nearest existing ancestor


class NewRunDir(Callback):
    """Notes whether the run dir is new: Hydra creates it after on_run_start."""

    def on_run_start(self, config, **kwargs) -> None:
        run_dir = Path(os.path.abspath(config.hydra.run.dir))
        ancestor = run_dir
        while not ancestor.exists():
            ancestor = ancestor.parent
        if ancestor != run_dir:
            _new_run_dirs[run_dir] = ancestor
            when_interrupted(lambda: remove_new_run_dir(run_dir, config.hydra.output_subdir))


def log_files_in(directory: Path) -> list[logging.FileHandler]:
    return [handler for handler in logging.getLogger().handlers
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == directory]


def holds_only_hydra_files(run_dir: Path, output_subdir: str | None) -> bool:
    logs = {Path(handler.baseFilename) for handler in log_files_in(run_dir)}
    hydra_dir = run_dir / output_subdir if output_subdir else None
    for path in run_dir.rglob("*"):
        if path in logs or path == hydra_dir or (path.parent == hydra_dir and path.name in HYDRA_FILES):
            continue
        return False
    return True


def remove_new_run_dir(run_dir: Path, output_subdir: str | None) -> None:
    """Remove the run dir, and the parents this run created, if it holds only Hydra's files."""
    run_dir = Path(os.path.abspath(run_dir))
    ancestor = _new_run_dirs.get(run_dir)
    if output_subdir and run_dir not in (run_dir / output_subdir).parents:
        output_subdir = None  # an output_subdir outside the run dir is not this run dir's
    if ancestor is None or not run_dir.is_dir() or not holds_only_hydra_files(run_dir, output_subdir):
        return
    for handler in log_files_in(run_dir):  # the job's log, run.log
        logging.getLogger().removeHandler(handler)
        handler.close()
        Path(handler.baseFilename).unlink(missing_ok=True)
    start = run_dir
    if output_subdir:
        start = run_dir / output_subdir
        for name in HYDRA_FILES:
            (start / name).unlink(missing_ok=True)
    for directory in [start, *start.parents]:
        if directory == ancestor:
            break
        try:
            directory.rmdir()
        except OSError:  # it holds something else after all: kept, and so are its parents
            return


@contextmanager
def no_run_dir_left_when_refused(run_dir: Path, output_subdir: str | None):
    try:
        yield
    except UsageError:
        remove_new_run_dir(run_dir, output_subdir)
        raise
