"""The summary's tables from load()'s samples: summary.csv (one row per sample), the per-setting table
of summary.md, and how their numbers are written."""
import math
from pathlib import Path

import pandas as pd

from .load import AXES

METRICS = {
    "perplexity": "perplexity per generated token",
    "logprob": "log p of the generated tokens (nats)",
    "mean_entropy": "entropy of the sampled distribution (nats)",
    "mean_nucleus_size": "tokens the rule can pick (kept, mass >= 2**-28)",
    "distinct_1": "distinct-1",
    "distinct_2": "distinct-2",
    "distinct_3": "distinct-3",
    "repetition": "share of repeated 4-grams",
}
SETTING = ("model", "prompt", "temperature", "nucleus")
EXTRA_AXES = ("top_k", "min_p")  # columns of the per-setting table where some sample has them
CSV_COLUMNS = ("job", "overrides", "model", "prompt", "seed", "sample", *AXES, "temperature_sweep", "nucleus_sweep",
               "swept", "schedule", *METRICS, "diverges_from", "artifact", "text")


def with_metrics(samples: pd.DataFrame) -> pd.DataFrame:
    """samples with every metric and axis as a column (empty where an artifact has none), metrics as
    floats."""
    frame = samples.copy()
    for column in (*AXES, *METRICS, "diverges_from"):
        if column not in frame:
            frame[column] = None
    for metric in METRICS:
        frame[metric] = pd.to_numeric(frame[metric]).astype(float)
    return frame


def setting_columns(samples: pd.DataFrame) -> list[str]:
    """model, prompt, temperature, nucleus, and top_k / min_p where some sample has them."""
    return [*SETTING, *(axis for axis in EXTRA_AXES if axis in samples and samples[axis].notna().any())]


def per_setting(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (model, prompt, the axes' values), sorted as numbers: how many samples
    share it (over seeds and jobs) and each metric's mean over them."""
    frame = with_metrics(samples)
    settings = setting_columns(frame)
    table = frame.groupby(settings, dropna=False, sort=True).agg(
        samples=("sample", "size"), **{metric: (metric, "mean") for metric in METRICS})
    return table.reset_index()


def sample_table(samples: pd.DataFrame) -> pd.DataFrame:
    """summary.csv's rows: one per sample, its run's sweeps, settings, metrics, artifact and text."""
    frame = with_metrics(samples)
    swept = frame["swept"].str.split()
    frame["temperature_sweep"] = swept.map(lambda axes: "temperature" in axes)
    frame["nucleus_sweep"] = swept.map(lambda axes: "nucleus" in axes)
    return frame[list(CSV_COLUMNS)]


def write_csv(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False, encoding="utf-8")


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
    return f"{value:,}" if isinstance(value, int) else str(value)


def python_value(value):
    """None for a missing value, a Python int or float for a numpy one."""
    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def cell(column: str, value, decimals: dict[str, int]) -> str:
    value = python_value(value)
    if value is None:
        return "(none)" if column == "prompt" else ""
    if column in AXES:
        return plain_number(value)
    if column in decimals:
        return readable(value, decimals[column])
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_markdown(table: pd.DataFrame, path: Path, after: str = "") -> None:
    """The per-setting table (per_setting) as summary.md, then `after` (markdown)."""
    columns = list(table.columns)
    decimals = {metric: decimals_for(table[metric].dropna()) for metric in METRICS if metric in table}
    lines = ["# Sweep summary", "", "Means per setting over samples (and seeds and jobs) that share it.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(column, value, decimals) for column, value in zip(columns, row)) + " |"
              for row in table.itertuples(index=False)]
    path.write_text("\n".join(lines) + "\n" + after, encoding="utf-8")
