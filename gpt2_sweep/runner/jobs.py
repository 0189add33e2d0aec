"""A multirun's jobs: those that fail are recorded in their own dir and reported once the sweep is
over, or when it is interrupted; which jobs of the sweep dir ran in this multirun; the sweep dir held
for the multirun's length."""
import sys
import traceback
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from ..artifact import ARTIFACT_NAME, listed, read_artifact, read_json, write_json_atomic
from ..errors import UsageError
from .cli import usage_errors_as_one_line
from .interrupts import forget, when_interrupted
from .lock import run_dir_lock

ERROR_NAME = "error.json"
# What failed at the end of this multirun besides its jobs (the summary): the exit code is 1 then too.
failed_at_the_end: list[str] = []


@contextmanager
def failure_recorded(job_dir: Path, overrides: list[str]):
    """Run one multirun job: a failure writes error.json in its dir instead of ending the sweep (the
    report at the end of the multirun prints it: once, not also here)."""
    error_path = Path(job_dir) / ERROR_NAME
    try:
        yield
    except Exception as error:  # noqa: BLE001 - every failure of a job is recorded, not raised
        write_json_atomic(error_path, {
            "message": str(error),
            "type": type(error).__name__,
            "bad_input": isinstance(error, UsageError) and error.exit_code == UsageError.exit_code,
            "overrides": list(overrides),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "traceback": None if isinstance(error, UsageError) else traceback.format_exc(),
        })
    else:
        error_path.unlink(missing_ok=True)


class MultirunJobs:
    """The job dirs of one multirun, told from those an earlier multirun left in the same sweep dir by
    the files a job writes whenever it runs: Hydra's <output_subdir>/overrides.yaml at its start, and
    error.json or samples.json. (Without an output_subdir, a job that only found an identical artifact
    leaves no trace, so only the jobs that wrote something are known.)"""

    def __init__(self, sweep_dir: Path, output_subdir: str | None):
        self.sweep_dir = Path(sweep_dir)
        self.start_marker = f"{output_subdir}/overrides.yaml" if output_subdir else None
        self.before = self.states()

    def states(self) -> dict[Path, tuple]:
        patterns = [ERROR_NAME, ARTIFACT_NAME] + ([self.start_marker] if self.start_marker else [])
        return {path: file_state(path) for pattern in patterns for path in self.sweep_dir.rglob(pattern)}

    def written(self, pattern: str) -> list[Path]:
        """The files matching pattern that jobs of this multirun wrote."""
        return sorted(path for path, state in self.states().items()
                      if path.match(pattern) and self.before.get(path) != state)

    def ran(self) -> list[Path]:
        if self.start_marker:
            depth = len(Path(self.start_marker).parts)
            return sorted({path.parents[depth - 1] for path in self.written(self.start_marker)})
        return sorted({path.parent for name in (ARTIFACT_NAME, ERROR_NAME) for path in self.written(name)})

    def failed(self) -> list[Path]:
        """The error.json files that jobs of this multirun wrote."""
        return self.written(ERROR_NAME)

    def finished(self) -> list[Path]:
        """The dirs of this multirun's jobs that hold a complete artifact, written or found identical."""
        failed = {path.parent for path in self.failed()}
        return [job for job in self.ran() if job not in failed and read_artifact(job / ARTIFACT_NAME)]


def file_state(path: Path) -> tuple:
    """What tells one writing of a file from another, even within one tick of a coarse file clock."""
    stat = path.stat()
    small = path.name != ARTIFACT_NAME  # artifacts can be megabytes: their inode and size tell
    return stat.st_mtime_ns, stat.st_ino, stat.st_size, path.read_bytes() if small else None


class FailedJobsReport(Callback):
    """At the end of a multirun, one line on stderr per job that failed in it, then exit code 1 (also
    when only the summary failed: it says so itself); when the multirun is interrupted, those lines,
    and what the interrupted line says.

    error.json files already in the sweep dir when the multirun started (from an earlier run of it)
    count only if a job of this multirun wrote them again.
    """

    def on_multirun_start(self, config, **kwargs) -> None:
        failed_at_the_end.clear()
        self.jobs = MultirunJobs(Path(config.hydra.sweep.dir), config.hydra.output_subdir)
        self.when_interrupted = partial(self.interrupted, config)
        when_interrupted(self.when_interrupted)

    def report(self, config) -> int:
        """Print the failed jobs' lines; return how many."""
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = self.jobs.failed() if hasattr(self, "jobs") else []
        for path in failed:
            error = read_json(path) or {"message": f"see {path}"}
            print(f"error: job {path.parent.relative_to(sweep_dir)} ({' '.join(error.get('overrides', []))}) "
                  f"failed: {error.get('message')}", file=sys.stderr)
        return len(failed)

    def interrupted(self, config) -> str | None:
        self.report(config)
        sweep_dir = Path(config.hydra.sweep.dir)
        finished = self.jobs.finished()
        failed = [path.parent for path in self.jobs.failed()]
        unfinished = [job for job in self.jobs.ran() if job not in finished and job not in failed]
        said = [f"{listed(names(jobs, sweep_dir))} {what}" for jobs, what in
                ((finished, "finished"), (failed, "failed"), (unfinished, "did not")) if jobs]
        if not said:
            return None
        named = "${now:" not in str(OmegaConf.to_container(config.hydra.sweep, resolve=False).get("dir"))
        again = "" if named else f" with hydra.sweep.dir={sweep_dir}"  # a new time stamp, a new dir
        return f"{', '.join(said)}; run the same command again{again} to resume"

    def on_multirun_end(self, config, **kwargs) -> None:
        forget(getattr(self, "when_interrupted", None))
        if self.report(config) or failed_at_the_end:
            sys.exit(1)


def names(jobs: list[Path], sweep_dir: Path) -> list[str]:
    return [job.relative_to(sweep_dir).as_posix() for job in jobs]


class SweepDirLock(Callback):
    """A multirun holds its sweep dir from its start to its end (runner/lock.py): a second multirun
    into the same dir is refused in one line naming the first. Its end hook runs before the others'
    (Hydra calls them in reverse), since the failed-jobs report ends the process."""

    def on_multirun_start(self, config, **kwargs) -> None:
        held = ExitStack()
        with usage_errors_as_one_line():  # Hydra would turn an exception raised here into a warning
            held.enter_context(run_dir_lock(Path(config.hydra.sweep.dir)))
        _held_sweep_dirs.append(held)  # not on self: submitit pickles the callbacks with its launcher
        when_interrupted(release_sweep_dirs)

    def on_multirun_end(self, config, **kwargs) -> None:
        release_sweep_dirs()


_held_sweep_dirs: list[ExitStack] = []


def release_sweep_dirs() -> None:
    forget(release_sweep_dirs)
    while _held_sweep_dirs:
        _held_sweep_dirs.pop().close()
