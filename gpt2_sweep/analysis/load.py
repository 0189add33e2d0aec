"""Artifacts as a table: one row per sample of a run dir, a multirun dir or a samples.json.

    import gpt2_sweep
    samples = gpt2_sweep.load("outputs/multiruns/2026-11-26_10-00-00_000000")
    samples[samples.swept == "temperature"].groupby("temperature").perplexity.mean()
    gpt2_sweep.first_divergence(samples.iloc[0], samples.iloc[3])
"""
from pathlib import Path

import pandas as pd

from ..artifact import ARTIFACT_NAME, read_artifact, sample_settings
from .divergence import Divergence, Pick, first_divergence  # noqa: F401 - the analysis API

RUN_COLUMNS = ("job", "artifact", "overrides", "model", "model_source", "prompt", "seed", "swept", "schedule",
               "sample")
AXES = ("temperature", "nucleus", "top_k", "min_p")  # the settings a schedule can sweep
SAMPLE_COLUMNS = ("text", "continuation", "tokens", "prompt_tokens", "token_strings", "token_logprobs")
TOKEN_COLUMNS = ("tokens", "token_strings", "token_logprobs")


def load_samples(path, tokens: bool = True) -> pd.DataFrame:
    """One row per sample: where it comes from, which axes its run swept (`swept`: their names,
    space-separated, "" where none) on which `schedule` (paired or grid), its settings, text,
    tokens, token-level fields, metrics (one column each) and the run's p_values. Artifacts of older
    versions load too, their missing fields empty.

    tokens=False leaves out the per-token lists (tokens, token_strings, token_logprobs), most of a
    table's memory: a summary of a million samples needs none of them.
    """
    path = Path(path)
    root = path.parent if path.is_file() else path
    sample_columns = tuple(key for key in SAMPLE_COLUMNS if tokens or key not in TOKEN_COLUMNS)
    rows = [row for artifact in artifact_paths(path) for row in artifact_rows(artifact, root, sample_columns)]
    settings = unique(key for row in rows for key in row["settings"])
    metrics = unique(key for row in rows for key in row["metrics"])
    table = [{**{key: row[key] for key in (*RUN_COLUMNS, *sample_columns)},
              **{key: row["settings"].get(key) for key in settings},
              **{key: row["metrics"].get(key) for key in metrics},
              "p_values": row["p_values"]} for row in rows]
    columns = unique([*RUN_COLUMNS, *settings, *sample_columns, *metrics, "p_values"])
    frame = pd.DataFrame(table, columns=columns)
    for column in columns:
        # An integer column with gaps (diverges_from, or a field older artifacts lack) would
        # otherwise turn into floats.
        present = [row[column] for row in table if row[column] is not None]
        if present and all(type(value) is int for value in present):
            frame[column] = frame[column].astype("Int64")
    return frame


def artifact_paths(path: Path) -> list[Path]:
    """The samples.json files a path names: itself, or every one under a dir, jobs in number order."""
    if path.is_file():
        if read_artifact(path) is None:
            raise ValueError(f"{path} is not a complete samples.json artifact")
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run dir, multirun dir or samples.json")
    paths = sorted(path.rglob(ARTIFACT_NAME), key=lambda found: natural_key(found.relative_to(path)))
    if not paths:
        raise FileNotFoundError(f"no {ARTIFACT_NAME} under {path}")
    return paths


def natural_key(path: Path) -> list:
    """Job dirs 2 before 10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts]


def artifact_rows(path: Path, root: Path, sample_columns: tuple[str, ...] = SAMPLE_COLUMNS) -> list[dict]:
    document = read_artifact(path)
    if document is None:  # a job killed while writing, or not an artifact
        return []
    metadata = document["metadata"]
    run = {
        "job": path.parent.relative_to(root).as_posix(),
        "artifact": str(path.absolute()),
        "overrides": " ".join(metadata.get("overrides") or []),
        "model": metadata.get("model_name"),
        "model_source": metadata.get("model_source"),
        "prompt": metadata.get("prompt"),
        "seed": metadata.get("seed"),
        "swept": " ".join(swept_axes(metadata)),
        "schedule": metadata.get("schedule", "paired"),
        "p_values": metadata.get("p_values"),
    }
    return [{**run, "sample": index, "settings": sample_settings(sample),
             **{key: sample.get(key) for key in sample_columns}, "metrics": sample.get("metrics") or {}}
            for index, sample in enumerate(document["texts"])]


def swept_axes(metadata: dict) -> list[str]:
    """The axes a run swept, in the artifact's order (older artifacts: their two switches)."""
    sweeps = metadata.get("sweeps") or {"temperature": metadata.get("temperatures"), "nucleus": metadata.get("nucleus")}
    return [axis for axis, swept in sweeps.items() if swept]


def unique(keys) -> list[str]:
    """Keys in the order first met."""
    return list(dict.fromkeys(keys))
