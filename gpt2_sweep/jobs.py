"""Multirun jobs that fail are recorded in their own dir and reported once the sweep is over."""
import logging
import sys
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from hydra.experimental.callback import Callback

from .artifact import read_json, write_json_atomic
from .errors import UsageError

ERROR_NAME = "error.json"
log = logging.getLogger(__name__)


@contextmanager
def failure_recorded(job_dir: Path, overrides: list[str]):
    """Run one multirun job: a failure writes error.json in its dir instead of ending the sweep."""
    error_path = Path(job_dir) / ERROR_NAME
    try:
        yield
    except Exception as error:  # noqa: BLE001 - every failure of a job is recorded, not raised
        write_json_atomic(error_path, {
            "message": str(error),
            "type": type(error).__name__,
            "bad_input": isinstance(error, UsageError),
            "overrides": list(overrides),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "traceback": None if isinstance(error, UsageError) else traceback.format_exc(),
        })
        log.error(f"job failed ({' '.join(overrides)}): {error}")
    else:
        error_path.unlink(missing_ok=True)


class FailedJobsReport(Callback):
    """At the end of a multirun, one line on stderr per job that failed in it, then exit code 1.

    error.json files already in the sweep dir when the multirun started (from an earlier run of it)
    count only if a job of this multirun wrote them again.
    """

    def on_multirun_start(self, config, **kwargs) -> None:
        self.earlier = error_files(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        earlier = getattr(self, "earlier", {})
        failed = [path for path, state in error_files(sweep_dir).items() if earlier.get(path) != state]
        for path in failed:
            error = read_json(path) or {"message": f"see {path}"}
            print(f"error: job {path.parent.relative_to(sweep_dir)} ({' '.join(error.get('overrides', []))}) "
                  f"failed: {error.get('message')}", file=sys.stderr)
        if failed:
            sys.exit(1)


def error_files(sweep_dir: Path) -> dict[Path, tuple]:
    """Every error.json under the sweep dir with what tells one writing of it from another."""
    files = {}
    for path in sorted(sweep_dir.rglob(ERROR_NAME)):
        stat = path.stat()
        files[path] = (stat.st_mtime_ns, stat.st_ino, path.read_bytes())
    return files
