"""Summaries of a run or sweep dir: summary.csv, summary.md, one plot per metric and, for grid
runs, one heatmap per metric.

    python -m gpt2_sweep.summarize DIR

Reads every samples.json under DIR (JSON only), older artifacts without metrics included.
"""
import argparse
import csv
import logging
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from hydra.experimental.callback import Callback

from .artifact import ARTIFACT_NAME, read_artifact
from .interrupts import forget, when_interrupted
from .jobs import MultirunJobs, failed_at_the_end, listed

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
MAX_WRITTEN_CELLS = 144  # a heatmap's cells carry their values up to 12 x 12
SETTING = ("model", "prompt", "temperature", "nucleus")
EXTRA_AXES = ("top_k", "min_p")  # columns of their own where some sample has them


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
                **{axis: sample.get(axis) for axis in EXTRA_AXES},
                "temperature_sweep": metadata.get("temperatures"),
                "nucleus_sweep": metadata.get("nucleus"),
                "swept": " ".join(swept_axes(metadata)),
                "schedule": metadata.get("schedule", "paired"),
                **{metric: metrics.get(metric) for metric in METRICS},
                "diverges_from": metrics.get("diverges_from"),
                "artifact": str(path.absolute()),
                "text": sample.get("text"),
            })
    return rows


def swept_axes(metadata: dict) -> list[str]:
    """The axes a run swept, in the order of schedules.AXES (older artifacts: their two switches)."""
    sweeps = metadata.get("sweeps") or {"temperature": metadata.get("temperatures"), "nucleus": metadata.get("nucleus")}
    return [axis for axis, swept in sweeps.items() if swept]


def mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def setting_columns(rows: list[dict]) -> tuple[str, ...]:
    return SETTING + tuple(axis for axis in EXTRA_AXES if any(row.get(axis) is not None for row in rows))


def averaged_per_setting(rows: list[dict]) -> list[dict]:
    columns = setting_columns(rows)
    groups = defaultdict(list)
    for row in rows:
        groups[tuple(row[key] for key in columns)].append(row)
    return [{**dict(zip(columns, key)), "samples": len(group),
             **{metric: mean(row[metric] for row in group) for metric in METRICS}}
            for key, group in sorted(groups.items(), key=lambda item: tuple(map(str, item[0])))]


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def decimals_for(values) -> int:
    """Decimals that suit a column's largest value: 3 below 10, 2 below 1,000, else 1."""
    largest = max((abs(v) for v in values if v is not None and math.isfinite(v)), default=0.0)
    return 3 if largest < 10 else 2 if largest < 1000 else 1


def readable(value: float, decimals: int) -> str:
    """Fixed decimals, thousands separated: 49,150.2 rather than 4.915e+04."""
    return f"{value:,.{decimals}f}"


def plain_number(value) -> str:
    """A setting as it was given, or a tick: 0.4, 1.2, 0, 49,150 (up to 6 decimals)."""
    if isinstance(value, float):
        return f"{value:,.6f}".rstrip("0").rstrip(".")
    return str(value)


def plain_log_ticks(axis) -> None:
    """Tick labels 6, 20, 60 on a log axis rather than 6 x 10^0, 2 x 10^1, 6 x 10^1; matplotlib's
    LogFormatter still decides which ticks get one."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def __call__(self, value, position=None):
            return plain_number(float(value)) if super().__call__(value, position) else ""

    axis.set_major_formatter(PlainLogFormatter())
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def cell(column: str, value, decimals: dict[str, int]) -> str:
    if value is None:
        return "(none)" if column == "prompt" else ""
    if column in ("temperature", "nucleus", "min_p"):
        return plain_number(value)
    if column in decimals:
        return readable(value, decimals[column])
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_markdown(groups: list[dict], path: Path) -> None:
    columns = [*(setting_columns(groups) if groups else SETTING), "samples", *METRICS]
    decimals = {metric: decimals_for(group[metric] for group in groups) for metric in METRICS}
    lines = ["# Sweep summary", "", "Means per setting over samples (and seeds and jobs) that share it.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(column, group[column], decimals) for column in columns) + " |"
              for group in groups]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def in_grid(row: dict) -> bool:
    """A sample of a grid run: two axes or more swept, every value with every value."""
    return row["schedule"] == "grid" and len(row["swept"].split()) >= 2


def line_label(model, both_swept: bool) -> str:
    return f"{model}" + (" | both swept, paired" if both_swept else "")


@dataclass(frozen=True)
class Spread:
    """A metric's values at one point of a line: median, 25th and 75th percentile, and how many."""

    median: float
    lower: float
    upper: float
    count: int

    @staticmethod
    def of(values: list[float]) -> "Spread":
        lower, median, upper = np.percentile(values, [25, 50, 75])
        return Spread(float(median), float(lower), float(upper), len(values))


def line_spreads(rows: list[dict], metric: str, setting: str, other: str) -> dict[str, dict[float, Spread]]:
    """Per line (a model, and whether the other setting was swept with it), per value of setting:
    the spread of the metric over the prompts, seeds and jobs that share them. Grid runs are left to
    the heatmaps."""
    values = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row[f"{setting}_sweep"] and row[metric] is not None and not in_grid(row):
            values[line_label(row["model"], bool(row[f"{other}_sweep"]))][row[setting]].append(row[metric])
    return {label: {x: Spread.of(points[x]) for x in sorted(points)} for label, points in sorted(values.items())}


def count_note(spreads: dict[float, Spread]) -> str:
    counts = {spread.count for spread in spreads.values()}
    return f" (n={counts.pop()} per point)" if len(counts) == 1 else " (n at each point)"


def plot_metric(rows: list[dict], metric: str, path: Path) -> None:
    """Against temperature and against nucleus: per line the median over prompts, seeds and jobs,
    a band from the 25th to the 75th percentile, and the number of samples behind each point."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    any_grid = any(in_grid(row) and row[metric] is not None for row in rows)
    panels = {setting: line_spreads(rows, metric, setting, other)
              for setting, other in (("temperature", "nucleus"), ("nucleus", "temperature"))}
    labels = sorted({label for lines in panels.values() for label in lines})
    colors = {label: f"C{index % 10}" for index, label in enumerate(labels)}  # one colour per line in both panels
    for axis, (setting, lines) in zip(axes, panels.items()):
        for label, spreads in lines.items():
            xs, color = list(spreads), colors[label]
            axis.plot(xs, [spreads[x].median for x in xs], marker="o", color=color,
                      label=label + count_note(spreads))
            axis.fill_between(xs, [spreads[x].lower for x in xs], [spreads[x].upper for x in xs],
                              color=color, alpha=0.18, linewidth=0)
            if len({spread.count for spread in spreads.values()}) > 1:
                for x in xs:
                    axis.annotate(f"n={spreads[x].count}", (x, spreads[x].median), textcoords="offset points",
                                  xytext=(0, 6), ha="center", fontsize=7, color=color)
        axis.set_xlabel(setting)
        axis.set_ylabel(METRICS[metric])
        axis.set_title(f"{METRICS[metric]} against {setting}\nmedian over prompts and seeds, "
                       "band: 25th to 75th percentile", fontsize=9)
        axis.grid(alpha=0.3)
        if metric in LOG_SCALE and lines:
            axis.set_yscale("log")
            plain_log_ticks(axis.yaxis)
        if not lines:
            note = f"grid runs: see heatmap_{metric}.png" if any_grid else f"no {setting} sweep here"
            axis.text(0.5, 0.5, note, ha="center", va="center", transform=axis.transAxes, color="gray")
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


@dataclass(frozen=True)
class GridMedians:
    """A metric over the grid of two swept axes (temperature x nucleus, or the first two a grid run
    swept): medians[i, j] over the samples at row_values[i] and column_values[j] (NaN where there
    are none; over any further swept axis too), counts[i, j] how many."""

    row_axis: str
    column_axis: str
    row_values: list[float]
    column_values: list[float]
    medians: np.ndarray
    counts: np.ndarray


def grid_medians(rows: list[dict], metric: str) -> GridMedians:
    """The grid of the grid runs' samples among rows (those sweeping the first grid run's first two
    axes), the metric's median in each cell."""
    grid_rows = [row for row in rows if in_grid(row)]
    row_axis, column_axis = grid_rows[0]["swept"].split()[:2] if grid_rows else ("temperature", "nucleus")
    cells = defaultdict(list)
    for row in grid_rows:
        if row["swept"].split()[:2] == [row_axis, column_axis] and row[metric] is not None:
            cells[row[row_axis], row[column_axis]].append(row[metric])
    row_values = sorted({value for value, _ in cells})
    column_values = sorted({value for _, value in cells})
    medians = np.full((len(row_values), len(column_values)), np.nan)
    counts = np.zeros((len(row_values), len(column_values)), dtype=int)
    for (row_value, column_value), values in cells.items():
        i, j = row_values.index(row_value), column_values.index(column_value)
        medians[i, j], counts[i, j] = np.median(values), len(values)
    return GridMedians(row_axis, column_axis, row_values, column_values, medians, counts)


def has_grid(rows: list[dict]) -> bool:
    return any(in_grid(row) for row in rows)


def grid_ticks(values: list[float], most: int) -> tuple[list[int], list[str]]:
    """Positions and labels of at most `most` ticks along a heatmap's axis: every k-th value."""
    step = math.ceil(len(values) / most)
    positions = list(range(0, len(values), step))
    return positions, [f"{values[position]:.3g}" for position in positions]


def write_cell_values(axis, grid: GridMedians, norm, decimals: int) -> None:
    """Each cell's median in it, and its count where counts differ; dark text on light cells."""
    counts_differ = len(set(grid.counts[grid.counts > 0])) > 1
    for i, j in np.ndindex(grid.medians.shape):
        if grid.counts[i, j]:
            text = readable(grid.medians[i, j], decimals) + (f"\nn={grid.counts[i, j]}" if counts_differ else "")
            axis.text(j, i, text, ha="center", va="center", fontsize=8,
                      color="black" if norm(grid.medians[i, j]) > 0.6 else "white")


def plot_heatmap(rows: list[dict], metric: str, path: Path) -> None:
    """One heatmap per model of the grid runs: the first swept axis up (temperature), the second
    across (nucleus), the median over prompts, seeds and jobs in each cell (with the count where it
    varies), one colour scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    models = sorted({row["model"] for row in rows if in_grid(row)}, key=str)
    grids = [grid_medians([row for row in rows if row["model"] == model], metric) for model in models]
    values = np.concatenate([grid.medians.ravel() for grid in grids])
    values = values[~np.isnan(values)]
    columns = min(3, len(models))
    figure, axes = plt.subplots(math.ceil(len(models) / columns), columns, squeeze=False, layout="constrained",
                                figsize=(5.4 * columns + 1.4, 4.8 * math.ceil(len(models) / columns)))
    low, high = (values.min(), values.max()) if len(values) else (0.0, 1.0)
    norm = LogNorm(low, high) if metric in LOG_SCALE and low > 0 else Normalize(low, high)
    image = None
    for axis, model, grid in zip(axes.ravel(), models, grids):
        if not grid.counts.any():
            axis.text(0.5, 0.5, f"no {metric} here", ha="center", va="center", transform=axis.transAxes,
                      color="gray")
            axis.set_title(f"{model}", fontsize=9)
            continue
        image = axis.imshow(grid.medians, origin="lower", aspect="auto", cmap="viridis", norm=norm)
        axis.set_xticks(*grid_ticks(grid.column_values, most=6))
        axis.set_yticks(*grid_ticks(grid.row_values, most=11))
        axis.set_xlabel(grid.column_axis)
        axis.set_ylabel(grid.row_axis)
        counts = grid.counts[grid.counts > 0]
        shown = f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()} to {counts.max()}"
        axis.set_title(f"{model} (n={shown} per cell)", fontsize=9)
        if grid.medians.size <= MAX_WRITTEN_CELLS:
            write_cell_values(axis, grid, norm, decimals_for(values))
    for axis in axes.ravel()[len(models):]:
        axis.set_visible(False)
    if image is not None:
        colorbar = figure.colorbar(image, ax=axes.ravel().tolist(), label=METRICS[metric])
        if isinstance(norm, LogNorm):
            plain_log_ticks(colorbar.ax.yaxis)
    figure.suptitle(f"{METRICS[metric]}: median over prompts and seeds of the grid runs", fontsize=10)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def summarize(directory: Path, jobs: list[Path] | None = None) -> list[Path]:
    """Write summary.csv, summary.md, plot_<metric>.png (and heatmap_<metric>.png for grid runs) into
    directory; return their paths.

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
        if has_grid(rows):
            written.append(directory / f"heatmap_{metric}.png")
            plot_heatmap(rows, metric, written[-1])
    sources = sorted({row["job"] for row in rows})
    print(f"Summary of {len(rows)} samples{'' if sources == ['.'] else ' from ' + listed(sources)} written to "
          f"{directory} (summary.csv, summary.md, {len(written) - 2} plots)"
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
            failed_at_the_end.append("summary")  # the failed-jobs report, called next, exits with 1


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
