"""Bad input ends in one line on stderr and exit code 2, whether Hydra or the run finds it."""
import os
import re
import sys
from contextlib import contextmanager

from hydra.errors import CompactHydraException, MissingConfigException, OverrideParseException

from ..errors import UsageError
from .keys import known_keys, unknown_key_error


def visible(text: str) -> str:
    """Control characters shown as escapes, so that the message stays on one readable line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


NOT_IN_CONFIG = re.compile(r"Could not override '(?P<key>[^']+)'\.\s*To append to your config use \+")
AMBIGUOUS = re.compile(r"Ambiguous value for argument '(?P<key>[^=']+)=(?P<value>.*)'$", re.MULTILINE)


def shell_quoted(key: str, value: str) -> str:
    """key="'value'": double quotes for the shell, single quotes inside for Hydra (which reads \\')."""
    escaped = value.replace("'", "\\'")
    return f'{key}="\'{escaped}\'"'


def one_line(error: Exception) -> str:
    ambiguous = AMBIGUOUS.search(str(error))
    if ambiguous:
        key, value = ambiguous["key"], ambiguous["value"]
        return (f"{visible(key)}={visible(value)} holds a comma: quote the value to use it as text, e.g. "
                f"{visible(shell_quoted(key, value))} (a list: {key}=[a,b]; a sweep over values: add -m)")
    not_in_config = NOT_IN_CONFIG.search(str(error))
    if not_in_config and not not_in_config["key"].startswith("hydra."):  # Hydra's own keys: its message
        return str(unknown_key_error([not_in_config["key"]], known_keys()))
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, name = error.missing_cfg_file.rpartition("/")
        return f"{group}={name} is not a preset: one of {', '.join(error.options)}"
    lines = [visible(line.strip()) for line in str(error).splitlines() if line.strip()]
    if isinstance(error, OverrideParseException):
        return (f"cannot parse the override ({lines[0] if lines else ''}): quote a value that holds "
                "spaces, commas, brackets or unusual characters, e.g. prompt=\"'The fox, the hound'\"")
    if isinstance(error.__cause__, Exception) and str(error.__cause__).strip():
        lines.append(visible(str(error.__cause__).strip().splitlines()[0]))
    return " ".join(lines[:2]) or type(error).__name__


def check_command(argv: list[str]) -> None:
    """Refuse in one line what Hydra would end with a traceback: two commands at once (-m --cfg)."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    if args.multirun and args.cfg:
        raise UsageError("--cfg cannot preview a multirun (-m): drop -m, and give each swept key one value "
                         "(seed=0, not seed=0,1) to print that job's config with --cfg job; --cfg hydra "
                         "shows the sweep's parameters (hydra.sweeper.params)")
    given = [flag for flag, on in (("--run", args.run), ("-m/--multirun", args.multirun),
                                   ("--cfg", args.cfg), ("--info", args.info is not None),
                                   ("--shell-completion", args.shell_completion)) if on]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} cannot go together: give one of them")
    if args.resolve and not (args.cfg or args.help):
        raise UsageError("--resolve goes with --cfg or --help only")


@contextmanager
def usage_errors_as_one_line():
    """Run a @hydra.main function so that bad input prints one line and exits with 2.

    Hydra prints composition errors (an unknown preset, a bad override) itself unless
    HYDRA_FULL_ERROR is set; with it set they reach us. A user who set it gets Hydra's full report.
    """
    user_wants_full_error = "HYDRA_FULL_ERROR" in os.environ
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except CompactHydraException as error:
        if user_wants_full_error:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(UsageError.exit_code)
