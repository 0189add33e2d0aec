"""Summaries of a run or sweep dir: summary.csv, summary.md and one plot per metric.

    python -m gpt2_sweep.summarize DIR

Reads every samples.json under DIR (JSON only), older artifacts without metrics included.
"""
import argparse
import csv
import logging
import math
import sys
from collections import defaultdict
from functools import partial
from pathlib import Path

from hydra.experimental.callback import Callback

from .artifact import ARTIFACT_NAME, read_artifact
from .interrupts import forget, when_interrupted
from .jobs import MultirunJobs, listed

log = logging.getLogger(__name__)
METRICS = {
    "perplexity": "perplexity per generated token",
    "logprob": "log p of the generated tokens (nats)",
    "mean_entropy": "entropy of the sampled distribution (nats)",
    "mean_nucleus_size": "tokens in the sampled distribution",
    "distinct_1": "distinct-1",
    "distinct_2": "distinct-2",
    "distinct_3": "distinct-3",
    "repetition": "share of repeated 4-grams",
}
LOG_SCALE = {"perplexity", "mean_nucleus_size"}
SETTING = ("model", "prompt", "temperature", "nucleus")


def collect_rows(directory: Path) -> list[dict]:
    """One row per sample of every artifact under directory."""
    rows = []
    for path in sorted(directory.rglob(ARTIFACT_NAME)):
        document = read_artifact(path)
        if document is None:
            continue
        metadata = document["metadata"]
        job = path.parent.relative_to(directory).as_posix()
        for index, sample in enumerate(document["texts"]):
            metrics = sample.get("metrics") or {}
            rows.append({
                "job": job,
                "overrides": " ".join(metadata.get("overrides") or []),
                "model": metadata.get("model_name"),
                "prompt": metadata.get("prompt"),
                "seed": metadata.get("seed"),
                "sample": index,
                "temperature": sample.get("temperature"),
                "nucleus": sample.get("nucleus"),
                "temperature_sweep": metadata.get("temperatures"),
                "nucleus_sweep": metadata.get("nucleus"),
                **{metric: metrics.get(metric) for metric in METRICS},
            })
    return rows


def mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def averaged_per_setting(rows: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for row in rows:
        groups[tuple(row[key] for key in SETTING)].append(row)
    return [{**dict(zip(SETTING, key)), "samples": len(group),
             **{metric: mean(row[metric] for row in group) for metric in METRICS}}
            for key, group in sorted(groups.items(), key=lambda item: tuple(map(str, item[0])))]


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_markdown(groups: list[dict], path: Path) -> None:
    columns = [*SETTING, "samples", *METRICS]
    lines = ["# Sweep summary", "", "Means per setting over samples (and seeds and jobs) that share it.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(group[c]) if c != "prompt" or group[c] is not None else "(none)"
                                for c in columns) + " |" for group in groups]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def line_label(model, prompt, other_sweep: bool, other: str) -> str:
    shown = "(no prompt)" if prompt is None else (prompt if len(prompt) <= 32 else prompt[:31] + "…")
    return f"{model} | {shown!r}" + (f" | {other} swept too" if other_sweep else "")


def plot_metric(rows: list[dict], metric: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for axis, setting, other in zip(axes, ("temperature", "nucleus"), ("nucleus", "temperature")):
        lines = defaultdict(lambda: defaultdict(list))
        for row in rows:
            if row[f"{setting}_sweep"] and row[metric] is not None:
                key = line_label(row["model"], row["prompt"], row[f"{other}_sweep"], other)
                lines[key][row[setting]].append(row[metric])
        for label, points in sorted(lines.items()):
            xs = sorted(points)
            axis.plot(xs, [mean(points[x]) for x in xs], marker="o", label=label)
        axis.set_xlabel(setting)
        axis.set_ylabel(METRICS[metric])
        axis.set_title(f"{METRICS[metric]} against {setting}", fontsize=10)
        axis.grid(alpha=0.3)
        if metric in LOG_SCALE and lines:
            axis.set_yscale("log")
        if not lines:
            axis.text(0.5, 0.5, f"no {setting} sweep here", ha="center", va="center",
                      transform=axis.transAxes, color="gray")
    handles = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        figure.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(2, len(handles)),
                      fontsize=8, frameon=False)
    rows_of_legend = math.ceil(len(handles) / 2)
    figure.tight_layout(rect=(0, min(0.45, 0.07 * rows_of_legend), 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def summarize(directory: Path, jobs: list[Path] | None = None) -> list[Path]:
    """Write summary.csv, summary.md and plot_<metric>.png into directory; return their paths.

    jobs: the job dirs to cover (a multirun's own); by default every artifact under directory.
    """
    directory = Path(directory)
    rows = collect_rows(directory)
    left_out = []
    if jobs is not None:
        covered = {Path(job).relative_to(directory).as_posix() for job in jobs}
        left_out = sorted({row["job"] for row in rows} - covered)
        rows = [row for row in rows if row["job"] in covered]
        if not rows:
            earlier = directory / "summary.csv"
            print("No summary written: no job of this multirun finished"
                  + (f" ({earlier} is from an earlier run)" if earlier.exists() else ""))
            return []
    if not rows:
        log.warning(f"No {ARTIFACT_NAME} under {directory}: no summary written")
        return []
    written = [directory / "summary.csv", directory / "summary.md"]
    write_csv(rows, written[0])
    write_markdown(averaged_per_setting(rows), written[1])
    for metric in METRICS:
        written.append(directory / f"plot_{metric}.png")
        plot_metric(rows, metric, written[-1])
    sources = sorted({row["job"] for row in rows})
    print(f"Summary of {len(rows)} samples{'' if sources == ['.'] else ' from ' + listed(sources)} written to "
          f"{directory} (summary.csv, summary.md, {len(METRICS)} plots)"
          + (f"; {len(left_out)} {ARTIFACT_NAME} in the dir that this multirun did not write left out "
             f"({listed(left_out)})" if left_out else ""))
    return written


class SweepSummary(Callback):
    """At the end of every multirun, the summary of the jobs that finished in it, in the sweep dir
    (artifacts of earlier multiruns into the same dir left out)."""

    def on_multirun_start(self, config, **kwargs) -> None:
        self.jobs = MultirunJobs(Path(config.hydra.sweep.dir), config.hydra.output_subdir)
        self.when_interrupted = partial(self.on_multirun_end, config)  # the jobs finished so far
        when_interrupted(self.when_interrupted)

    def on_multirun_end(self, config, **kwargs) -> None:
        forget(getattr(self, "when_interrupted", None))
        try:
            summarize(Path(config.hydra.sweep.dir), self.jobs.finished() if hasattr(self, "jobs") else None)
        except Exception as error:  # noqa: BLE001 - a failed summary must not hide the jobs' results
            print(f"error: the sweep summary failed: {error!r}; rerun python -m gpt2_sweep.summarize "
                  f"{config.hydra.sweep.dir}", file=sys.stderr)


class OneLineErrors(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message} (--help explains)\n")


def main(argv: list[str]) -> int:
    parser = OneLineErrors(prog="python -m gpt2_sweep.summarize",
                           description="Write summary.csv, summary.md and one plot per metric into DIR, "
                                       "from every samples.json under it (older artifacts included).")
    parser.add_argument("directory", metavar="DIR", type=Path, help="a run or sweep dir")
    directory = parser.parse_args(argv).directory
    if not directory.is_dir():
        print(f"error: no such directory: {directory}", file=sys.stderr)
        return 2
    return 0 if summarize(directory) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
