"""A run refused for bad input leaves no run dir behind: the dir Hydra created for it, which then holds
only Hydra's own files, is removed again. A dir that existed before the run is never touched."""
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from hydra.experimental.callback import Callback

from .errors import UsageError

HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")
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


def remove_new_run_dir(run_dir: Path, output_subdir: str | None) -> None:
    """Remove the run dir and the parents this run created, as far as they hold only Hydra's files."""
    run_dir = Path(os.path.abspath(run_dir))
    ancestor = _new_run_dirs.get(run_dir)
    if ancestor is None:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):  # the job's log file, run.log
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir:
            root.removeHandler(handler)
            handler.close()
            Path(handler.baseFilename).unlink(missing_ok=True)
    start = run_dir
    if output_subdir and run_dir in (run_dir / output_subdir).parents:
        start = run_dir / output_subdir
        for name in HYDRA_FILES:
            (start / name).unlink(missing_ok=True)
    for directory in [start, *start.parents]:
        if directory == ancestor:
            break
        try:
            directory.rmdir()
        except OSError:  # it holds something else: kept, and so are its parents
            return


@contextmanager
def no_run_dir_left_when_refused(run_dir: Path, output_subdir: str | None):
    try:
        yield
    except UsageError:
        remove_new_run_dir(run_dir, output_subdir)
        raise
