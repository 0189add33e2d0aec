"""Ctrl-C ends the program with one line on stderr and exit code 130, never a traceback.

What was finished stays (artifacts are written whole or not at all); a multirun in progress first
writes the summary of the jobs that finished. Only the standard library here: run.py imports this
before anything else, so that Ctrl-C during its imports ends the same way.
"""
import signal
import sys
from contextlib import contextmanager

EXIT_CODE = 130  # what a shell reports for a program that SIGINT ended
DEFAULT_LINE = "nothing half-written is left; run the same command again to resume"
_actions = []  # what a multirun in progress does when interrupted; each may return the line to print


def when_interrupted(action) -> None:
    _actions.append(action)


def forget(action) -> None:
    if action in _actions:
        _actions.remove(action)


@contextmanager
def interrupts_as_one_line():
    try:
        yield
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the summary short
        lines = [action() for action in reversed(_actions)]
        print(f"interrupted: {next((line for line in lines if line), DEFAULT_LINE)}", file=sys.stderr)
        sys.exit(EXIT_CODE)
