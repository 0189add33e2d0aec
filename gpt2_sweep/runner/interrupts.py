"""Ctrl-C (SIGINT) and SIGTERM end the program with one line on stderr and exit code 130 or 143, never
a traceback.

What was finished stays (artifacts are written whole or not at all, finished batches as shards); a
multirun in progress first writes the summary of the jobs that finished. SIGTERM during generation
stops at the next batch boundary (sweep.predict), elsewhere at once. A run started with SIGINT ignored
(a shell script's background job) keeps ignoring it, as Python leaves it. Only the standard library
here: run.py imports this before anything else, so that a signal during its imports ends the same way.
"""
import signal
import sys
import threading
from contextlib import contextmanager

EXIT_CODE = 130  # what a shell reports for a program that SIGINT ended
TERMINATED_EXIT_CODE = 143  # and SIGTERM
DEFAULT_LINE = "nothing half-written is left; run the same command again to resume"
_actions = []  # what a multirun in progress does when interrupted; each may return the line to print


def when_interrupted(action) -> None:
    _actions.append(action)


def forget(action) -> None:
    if action in _actions:
        _actions.remove(action)


class Terminated(BaseException):
    """SIGTERM received: a BaseException, like KeyboardInterrupt, so that no `except Exception` records
    it as a failed job."""


def raise_terminated(signum, frame):
    raise Terminated


@contextmanager
def interrupts_as_one_line():
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, raise_terminated) if main_thread else None
    try:
        yield
    except (KeyboardInterrupt, Terminated) as signalled:
        terminated = isinstance(signalled, Terminated)
        for number in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the summary short
            signal.signal(number, signal.SIG_IGN)
        lines = [action() for action in reversed(_actions)]
        line = next((line for line in lines if line), DEFAULT_LINE)
        print(f"{'terminated' if terminated else 'interrupted'}: {line}", file=sys.stderr)
        sys.exit(TERMINATED_EXIT_CODE if terminated else EXIT_CODE)
    finally:
        if main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)
