"""The summary's figures from load()'s samples: a metric against each swept axis (line plots), and
over the grid runs' two first axes (heatmaps, one panel per value of every other axis)."""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .intervals import CONFIDENCE, cluster_bootstrap
from .load import AXES
from .study_table import prompt_clusters
from .tables import METRICS, decimals_for, plain_number, python_value, readable

LOG_SCALE = {"perplexity", "mean_nucleus_size"}
MAX_WRITTEN_CELLS = 144  # a heatmap's cells carry their values up to 12 x 12


def in_grid(samples: pd.DataFrame) -> pd.Series:
    """Whether each sample is of a grid run: two axes or more swept, every value with every value."""
    return (samples["schedule"] == "grid") & (samples["swept"].str.split().str.len() >= 2)


def has_grid(samples: pd.DataFrame) -> bool:
    return bool(in_grid(samples).any())


def pooled_over(samples: pd.DataFrame, keys: list[str], unit: str) -> str:
    """What each point (or cell) of samples grouped by keys is made of: 'n=2 per cell: seeds',
    'n=4 per point: prompts and seeds', 'n=8 per point: prompts and draws', '... and jobs' (more
    samples than prompt, draw and seed combinations, from several jobs), '... and repeated values'
    (one run's samples at the same value: a schedule's values rounded to the same integer), or 'one
    sample per cell'."""
    groups = samples.groupby(keys, dropna=False)
    counts = groups.size()
    if counts.max() == 1:
        return f"one sample per {unit}"
    # A prompt is its index in the set and its text (prompt_clusters): chapters of a book may open alike.
    sources = [column for column in ("prompt_index", "prompt", "draw", "seed") if column in samples]
    prompt_columns = [column for column in ("prompt_index", "prompt") if column in samples]
    varying = [name for name, columns in (("prompts", prompt_columns), ("draws", ["draw"]), ("seeds", ["seed"]))
               if set(columns) <= set(samples)
               and (groups[columns].apply(lambda cell: len(cell.drop_duplicates())) > 1).any()]
    runs = groups[[*sources, "job"]].apply(lambda cell: len(cell.drop_duplicates()))
    if (runs > groups[sources].apply(lambda cell: len(cell.drop_duplicates()))).any():
        varying.append("jobs")
    if (counts > runs).any():
        varying.append("repeated values")
    shown = f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()} to {counts.max()}"
    what = ", ".join(varying[:-1]) + " and " + varying[-1] if len(varying) > 1 else varying[0]
    return f"n={shown} per {unit}: {what}"


def setting_text(axis: str, value) -> str:
    value = python_value(value)
    return f"{axis} not set" if value is None else f"{axis}={plain_number(value)}"


def line_labels(runs: pd.DataFrame, axis: str) -> pd.Series:
    """Each sample's line in the plot against axis: its model, the axes its run swept paired (the
    same label, so the same colour, in each of their panels), and the other axes' fixed values where
    runs of the same model and pairing differ in them."""
    first = runs.drop_duplicates("artifact").set_index("artifact")  # a run's fixed values are its first sample's
    base, fixed = {}, {}
    for artifact, run in first.iterrows():
        swept = run["swept"].split()
        base[artifact] = f"{run['model']}" + (f" | {' x '.join(swept)} paired" if len(swept) > 1 else "")
        fixed[artifact] = ", ".join(setting_text(other, run[other]) for other in AXES if other != axis
                                    and other not in swept and python_value(run.get(other)) is not None)
    runs_fixed = pd.DataFrame({"base": base, "fixed": fixed})
    differs = runs_fixed.groupby("base")["fixed"].transform("nunique") > 1
    labels = runs_fixed["base"] + np.where(differs, " | " + runs_fixed["fixed"], "")
    return runs["artifact"].map(labels)


def mean_with_interval(values: pd.Series, clusters: pd.Series) -> pd.Series:
    """center: the mean; lower, upper: its 95% bootstrap interval, prompts resampled (intervals)."""
    interval = cluster_bootstrap(values.to_numpy(dtype=float), clusters[values.index].to_numpy())[0]
    return pd.Series({"center": interval.mean, "lower": interval.low, "upper": interval.high})


def median_with_quartiles(values: pd.Series) -> pd.Series:
    return pd.Series({"center": values.median(), "lower": values.quantile(0.25), "upper": values.quantile(0.75)})


def line_points(samples: pd.DataFrame, metric: str) -> dict[str, pd.DataFrame]:
    """Per swept axis with samples of the metric: per line and value of the axis, the number of
    samples there (count) and of their prompts (prompts), and where every point of the panel has
    samples of more than one prompt, the metric's mean (center) with its 95% bootstrap interval over
    prompts (lower, upper), else its median with the 25th and 75th percentiles; attrs["statistic"]
    says which ("mean" or "median"). Only runs that swept the axis count, grid runs left to the
    heatmaps."""
    panels = {}
    swept = samples["swept"].str.split()
    for axis in AXES:
        if axis not in samples:
            continue
        runs = samples[swept.map(lambda axes: axis in axes) & ~in_grid(samples) & samples[metric].notna()]
        if runs.empty:
            continue
        runs = runs.assign(line=line_labels(runs, axis), cluster=prompt_clusters(runs))
        groups = runs.groupby(["line", axis], sort=True)
        counts = groups.agg(count=(metric, "size"), prompts=("cluster", "nunique"))
        statistic = "mean" if (counts["prompts"] > 1).all() else "median"
        if statistic == "mean":
            middles = groups[metric].apply(lambda values: mean_with_interval(values, runs["cluster"])).unstack()
        else:
            middles = groups[metric].apply(median_with_quartiles).unstack()
        points = middles.join(counts).reset_index()
        points.attrs["pooled"] = pooled_over(runs, ["line", axis], "point")
        points.attrs["statistic"] = statistic
        panels[axis] = points
    return panels


def plain_log_ticks(axis) -> None:
    """Tick labels 6, 20, 60 on a log axis rather than 6 x 10^0, 2 x 10^1, 6 x 10^1; matplotlib's
    LogFormatter still decides which ticks get one."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def __call__(self, value, position=None):
            return plain_number(float(value)) if super().__call__(value, position) else ""

    axis.set_major_formatter(PlainLogFormatter())
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def count_note(counts: pd.Series) -> str:
    return f" (n={counts.iloc[0]} per point)" if counts.nunique() == 1 else " (n at each point)"


def plot_lines(samples: pd.DataFrame, metric: str, path: Path) -> bool:
    """One panel per swept axis: per line the mean with its 95% bootstrap interval over prompts as a
    band where every point pools several prompts, else the median with a band from the 25th to the
    75th percentile (the panel's title says which); the number of samples behind each point. Writes
    nothing (False) where no axis has points."""
    panels = line_points(samples, metric)
    if not panels:
        return False
    plt = pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False)
    labels = sorted({label for points in panels.values() for label in points.line})
    colors = {label: f"C{index % 10}" for index, label in enumerate(labels)}  # one colour per line in all panels
    for axis, (setting, points) in zip(axes[0], panels.items()):
        for label, line in points.groupby("line", sort=True):
            color = colors[label]
            axis.plot(line[setting], line["center"], marker="o", color=color, label=label + count_note(line["count"]))
            axis.fill_between(line[setting], line["lower"], line["upper"], color=color, alpha=0.18, linewidth=0)
            if line["count"].nunique() > 1:
                for x, y, count in zip(line[setting], line["center"], line["count"]):
                    axis.annotate(f"n={count}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center",
                                  fontsize=7, color=color)
        axis.set_xlabel(setting)
        axis.set_ylabel(METRICS[metric])
        band = (f"band: its {CONFIDENCE:.0%} bootstrap interval (prompts resampled)"
                if points.attrs["statistic"] == "mean" else "band: 25th to 75th percentile")
        axis.set_title(f"{METRICS[metric]} against {setting}\n{points.attrs['statistic']} "
                       f"({points.attrs['pooled']})\n{band}", fontsize=9)
        axis.grid(alpha=0.3)
        if metric in LOG_SCALE and (points[["center", "lower"]].fillna(1) > 0).all().all():
            axis.set_yscale("log")
            plain_log_ticks(axis.yaxis)
    handles = {}
    for axis in axes[0]:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    figure.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(2, len(handles)), fontsize=8,
                  frameon=False)
    figure.tight_layout(rect=(0, min(0.45, 0.07 * math.ceil(len(handles) / 2)), 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


@dataclass(frozen=True)
class GridMedians:
    """A metric over the grid of two swept axes (the first two a grid run swept): medians[i, j] over
    the samples at row_values[i] and column_values[j] (NaN where there are none), counts[i, j] how many."""

    row_axis: str
    column_axis: str
    row_values: list
    column_values: list
    medians: np.ndarray
    counts: np.ndarray


def grid_medians(samples: pd.DataFrame, metric: str) -> GridMedians:
    """The grid of the grid runs' samples among samples (those whose first two swept axes are the
    first grid run's), the metric's median in each cell, over all else that varies among them:
    heatmap_panels passes one panel's samples."""
    grid = samples[in_grid(samples)]
    row_axis, column_axis = grid["swept"].iloc[0].split()[:2] if len(grid) else ("temperature", "nucleus")
    grid = grid[(grid["swept"].str.split().str[:2].map(tuple) == (row_axis, column_axis)) & grid[metric].notna()]
    cells = grid.groupby([row_axis, column_axis])[metric].agg(["median", "size"])
    medians = cells["median"].unstack(column_axis).sort_index().sort_index(axis=1)
    counts = cells["size"].unstack(column_axis, fill_value=0).reindex_like(medians).fillna(0)
    return GridMedians(row_axis, column_axis, [python_value(v) for v in medians.index],
                       [python_value(v) for v in medians.columns], medians.to_numpy(dtype=float),
                       counts.to_numpy(dtype=int))


@dataclass(frozen=True)
class HeatmapPanel:
    title: str
    grid: GridMedians


def heatmap_panels(samples: pd.DataFrame, metric: str) -> list[HeatmapPanel]:
    """One panel per model, set of swept axes and value of every axis beside the heatmap's two
    (a grid of three or four axes: one panel per combination of the others), so that a cell holds
    only samples of one setting, pooled over prompts and seeds; its title says which and how many."""
    grid = samples[in_grid(samples) & samples[metric].notna()]
    panels = []
    for (model, swept), runs in grid.groupby(["model", "swept"], sort=True):
        shown = swept.split()[:2]
        others = [axis for axis in AXES if axis in runs and axis not in shown and runs[axis].notna().any()]
        facets = runs.groupby(others, dropna=False, sort=True) if others else [((), runs)]
        varying = [axis for axis in others if runs[axis].nunique(dropna=False) > 1]
        for values, facet in facets:
            values = values if isinstance(values, tuple) else (values,)
            setting = ", ".join(setting_text(axis, value) for axis, value in zip(others, values) if axis in varying)
            title = f"{model}" + (f" | {setting}" if setting else "") + f"\n{pooled_over(facet, shown, 'cell')}"
            panels.append(HeatmapPanel(title, grid_medians(facet, metric)))
    return panels


def grid_ticks(values: list, most: int) -> tuple[list[int], list[str]]:
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


def plot_heatmap(samples: pd.DataFrame, metric: str, path: Path) -> bool:
    """The heatmap_panels of the grid runs side by side, the first swept axis up, the second across,
    the median in each cell, one colour scale. Writes nothing (False) where there are none."""
    from matplotlib.colors import LogNorm, Normalize

    panels = heatmap_panels(samples, metric)
    if not panels:
        return False
    plt = pyplot()
    values = np.concatenate([panel.grid.medians.ravel() for panel in panels])
    values = values[~np.isnan(values)]
    columns = min(len(panels), 3) if len(panels) <= 9 else math.ceil(math.sqrt(len(panels)))
    rows = math.ceil(len(panels) / columns)
    size = 1.0 if len(panels) <= 9 else 0.7
    figure, axes = plt.subplots(rows, columns, squeeze=False, layout="constrained",
                                figsize=(size * 5.4 * columns + 1.4, size * 4.8 * rows))
    low, high = values.min(), values.max()
    norm = LogNorm(low, high) if metric in LOG_SCALE and low > 0 else Normalize(low, high)
    image = None
    for axis, panel in zip(axes.ravel(), panels):
        grid = panel.grid
        image = axis.imshow(grid.medians, origin="lower", aspect="auto", cmap="viridis", norm=norm)
        axis.set_xticks(*grid_ticks(grid.column_values, most=6))
        axis.set_yticks(*grid_ticks(grid.row_values, most=11))
        axis.set_xlabel(grid.column_axis)
        axis.set_ylabel(grid.row_axis)
        axis.set_title(panel.title, fontsize=8)
        if grid.medians.size <= MAX_WRITTEN_CELLS:
            write_cell_values(axis, grid, norm, decimals_for(values))
    for axis in axes.ravel()[len(panels):]:
        axis.set_visible(False)
    colorbar = figure.colorbar(image, ax=axes.ravel().tolist(), label=METRICS[metric])
    if isinstance(norm, LogNorm):
        plain_log_ticks(colorbar.ax.yaxis)
    figure.suptitle(f"{METRICS[metric]}: median per cell of the grid runs", fontsize=10)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
