"""The summary command: python -m gpt2_sweep.summarize DIR writes summary.csv, summary.md,
summary_pooled.csv, the plots and report.html of every samples.json under DIR."""
import argparse
import sys
from pathlib import Path

from .analysis.summary import summarize


def study_uniforms(seed: int, prompt_index: int, draw: int, count: int):
    """A study's vector of uniforms for the report (torch imported only when a study asks)."""
    from .decoding.sampling import sample_uniforms  # noqa: PLC0415

    return sample_uniforms(seed, prompt_index, draw, count)


class OneLineErrors(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message} (--help explains)\n")


def main(argv: list[str] | None = None) -> int:
    """The command's exit code: 0 when a summary was written. argv: sys.argv[1:] when None."""
    parser = OneLineErrors(prog="python -m gpt2_sweep.summarize",
                           description="Write summary.csv, summary.md (with the tables pooled over prompts), "
                                       "summary_pooled.csv, line plots, heatmaps and report.html into DIR, from every "
                                       "samples.json under it (older artifacts included).")
    parser.add_argument("directory", metavar="DIR", type=Path, help="a run or sweep dir")
    directory = parser.parse_args(argv).directory
    if not directory.is_dir():
        print(f"error: no such directory: {directory}", file=sys.stderr)
        return 2
    return 0 if summarize(directory, uniforms=study_uniforms) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
