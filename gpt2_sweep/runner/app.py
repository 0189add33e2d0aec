"""The `gpt2-sweep` command: run.py of the checkout this package is installed from (pip install -e .)."""
import runpy
import sys
from pathlib import Path

RUN_SCRIPT = Path(__file__).resolve().parents[2] / "run.py"


def main() -> None:
    """`gpt2-sweep ARGS` is `python run.py ARGS`: the same Hydra app, its conf/ beside it."""
    if not RUN_SCRIPT.is_file():
        print(f"error: gpt2-sweep runs run.py of a source checkout installed with pip install -e .; there is "
              f"none at {RUN_SCRIPT}", file=sys.stderr)
        sys.exit(2)
    sys.argv[0] = str(RUN_SCRIPT)
    runpy.run_path(str(RUN_SCRIPT), run_name="__main__")
