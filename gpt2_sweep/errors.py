"""The one error the user causes: bad input, reported as one line."""


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr, exit code 2, no artifact."""

    exit_code = 2
