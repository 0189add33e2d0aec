"""One run at a time in a run dir (and one multirun in a sweep dir): an flock on <dir>/.lock, held for the
whole run and released by the OS when the process dies, so that a killed run never blocks the next one;
the lock file names its holder."""
import fcntl
import json
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UsageError

LOCK_NAME = ".lock"


def holder_of(path: Path) -> str:
    """'pid 123 on host, started 2026-11-30T17:00:00+00:00', as the holder wrote it in the lock file."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a run that has not yet written its name"


def acquire(path: Path) -> int:
    """The descriptor of the locked file at path; a UsageError naming the holder where another process
    holds it. A file another process removed between our open and our lock is opened again."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise UsageError(f"{path.parent} is in use by another run ({holder_of(path)}): wait for it to end, "
                             "or choose another hydra.run.dir / hydra.sweep.dir") from None
        try:
            if os.stat(path).st_ino == os.fstat(descriptor).st_ino:
                return descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)  # its holder removed it as it ended: the lock is on a file no one else sees


@contextmanager
def run_dir_lock(run_dir: Path):
    """Hold the run dir for this process while the block runs; the lock file is removed afterwards,
    and so is the run dir where this made it and nothing else is in it."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    descriptor = acquire(path)
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                         "started": datetime.now(timezone.utc).isoformat(timespec="seconds")})
                 .encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: the next run never locks a file that goes away
        os.close(descriptor)
        if created:
            try:
                run_dir.rmdir()
            except OSError:
                pass
