"""The errors reported as one line: bad input, a full disk, and a tracker that failed."""


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2, no artifact."""

    exit_code = 2


class DiskFull(UsageError):
    """No space left for a file the run writes: one line naming it and the bytes it needed, exit code 1;
    what was finished stays (the file is written whole or not at all)."""

    exit_code = 1


class TrackerFailed(UsageError):
    """The experiment tracker of logger=... failed once the artifact was written: one line naming it,
    exit code 1; the artifact stays, and the same command again logs it."""

    exit_code = 1
