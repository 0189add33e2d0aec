"""Artifacts as a table: one row per sample of a run dir, a multirun dir or a samples.json.

    import gpt2_sweep
    samples = gpt2_sweep.load("outputs/multiruns/2026-11-26_10-00-00_000000")
    samples.groupby("temperature").perplexity.mean()
    gpt2_sweep.first_divergence(samples.iloc[0], samples.iloc[3])
"""
import logging
from pathlib import Path

import pandas as pd

from ..artifact import ARTIFACT_NAME, read_artifact, read_json, sample_settings
from .divergence import Divergence, Pick, first_divergence  # noqa: F401 - the analysis API

log = logging.getLogger(__name__)

RUN_COLUMNS = ("job", "artifact", "overrides", "model", "model_source", "prompt_index", "prompt", "reference",
               "reference_tokens", "reference_token_logprobs", "draw", "seed", "swept", "schedule", "sample")
AXES = ("temperature", "nucleus", "top_k", "min_p")  # the settings a schedule can sweep
SAMPLE_COLUMNS = ("text", "continuation", "tokens", "prompt_tokens", "token_strings", "token_logprobs", "token_kept")
# The samples' per-token lists: most of a table's memory (a reference's are stored once per prompt).
TOKEN_COLUMNS = ("tokens", "token_strings", "token_logprobs", "token_kept")
# A study's rows (samples.parquet): these columns are neither settings nor metrics.
STUDY_FIELDS = ("prompt_index", "draw", *SAMPLE_COLUMNS, "metrics")


class UnreadableArtifact(ValueError):
    """An artifact under a dir that cannot be read: its one line names it and why."""


def load_samples(path, tokens: bool | tuple[str, ...] = True, strict: bool = False) -> pd.DataFrame:
    """One row per sample: where it comes from (its prompt's index in the prompt set, the prompt, the
    human reference, its tokens and their log p under the model, and the draw; 0, the run's prompt,
    None and 0 in a one-prompt run), which axes its run swept (`swept`: their names, space-separated,
    "" where none) on which `schedule` (paired or grid), its settings, text, tokens, token-level
    fields, metrics (one column each) and, for one-prompt runs, the run's p_values. Artifacts of
    older versions load too, their missing fields empty. Slices of a study run as a multirun load as
    one study: their rows keep the prompt indices of the whole set.

    tokens=False leaves out the per-token lists (TOKEN_COLUMNS), most of a table's memory: a summary
    of a million samples needs none of them; a tuple of them keeps those only (("tokens",
    "token_logprobs"): what the measures across samples read).

    An artifact under a dir that cannot be read (a corrupt or truncated samples.json, a study's
    samples.parquet missing or unreadable) is left out with a warning naming it, one line each, and
    listed in the table's attrs["unreadable"] (their paths); strict=True raises UnreadableArtifact
    instead. A rerun of its job regenerates it.
    """
    kept = TOKEN_COLUMNS if tokens is True else () if tokens is False else tuple(tokens)
    path = Path(path)
    root = path.parent if path.is_file() else path
    parts, unreadable = [], []
    for artifact in artifact_paths(path):
        try:
            parts.append(artifact_frame(artifact, root, kept))
        except UnreadableArtifact as error:
            if strict:
                raise
            log.warning(str(error))
            unreadable.append(str(artifact))
    settings = unique(key for part in parts for key in part.attrs["settings"])
    metrics = unique(key for part in parts for key in part.attrs["metrics"])
    columns = unique([*RUN_COLUMNS, *settings, *SAMPLE_COLUMNS, *metrics, "p_values"])
    columns = [column for column in columns if column not in TOKEN_COLUMNS or column in kept]
    frame = pd.concat([part.reindex(columns=columns) for part in parts], ignore_index=True) if parts \
        else pd.DataFrame(columns=columns)
    frame.attrs = {"unreadable": unreadable} if unreadable else {}
    for column in columns:
        values = frame[column]
        if values.dtype == object or str(values.dtype) == "Int64":
            present = values.dropna()
            # An integer column with gaps (diverges_from, or a field older artifacts lack) would
            # otherwise turn into floats.
            if len(present) and all(isinstance(value, int) and not isinstance(value, bool) for value in present):
                frame[column] = values.astype("Int64")
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


def unreadable(path: Path) -> UnreadableArtifact:
    """Why the samples.json at path is no complete artifact (written atomically, it is never torn by a
    killed run: something else truncated or replaced it)."""
    document = read_json(path)
    if document is None:
        why = "not valid JSON: truncated or corrupt"
    elif not {"metadata", "texts"} <= set(document):
        why = "not an artifact: no metadata and texts"
    else:
        why = f"its {document['metadata'].get('samples_file')} is missing"
    return UnreadableArtifact(f"{path} cannot be read ({why}): its samples are left out; run its job again "
                              "to regenerate it")


def artifact_frame(path: Path, root: Path, kept: tuple[str, ...] = TOKEN_COLUMNS) -> pd.DataFrame:
    """The artifact's samples, settings and metrics named in attrs; UnreadableArtifact where it is no
    complete artifact."""
    document = read_artifact(path)
    if document is None:
        raise unreadable(path)
    metadata = document["metadata"]
    run = {
        "job": path.parent.relative_to(root).as_posix(),
        "artifact": str(path.absolute()),
        "overrides": " ".join(metadata.get("overrides") or []),
        "model": metadata.get("model_name"),
        "model_source": metadata.get("model_source"),
        "seed": metadata.get("seed"),
        "swept": " ".join(swept_axes(metadata)),
        "schedule": metadata.get("schedule", "paired"),
    }
    if document["texts"] is None:
        table_path = path.parent / metadata["samples_file"]
        try:
            return study_frame(table_path, metadata, run, kept)
        except (OSError, ValueError, KeyError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise UnreadableArtifact(f"{table_path} cannot be read ({type(error).__name__}): the samples of "
                                     f"{path} are left out; run its job again to regenerate it") from error
    rows = [{**run, "prompt_index": 0, "prompt": metadata.get("prompt"), "reference": None, "draw": 0,
             "sample": index, **sample_settings(sample),
             **{key: sample.get(key) for key in SAMPLE_COLUMNS if key not in TOKEN_COLUMNS or key in kept},
             **(sample.get("metrics") or {}), "p_values": metadata.get("p_values")}
            for index, sample in enumerate(document["texts"])]
    frame = pd.DataFrame(rows, dtype=object)
    frame.attrs = {"settings": unique(key for sample in document["texts"] for key in sample_settings(sample)),
                   "metrics": unique(key for sample in document["texts"] for key in sample.get("metrics") or {})}
    return frame


def study_frame(table_path: Path, metadata: dict, run: dict, kept: tuple[str, ...] = TOKEN_COLUMNS) -> pd.DataFrame:
    """A study's samples.parquet as rows, each with its prompt and reference from metadata.prompts;
    of the per-token lists only those kept are read."""
    import pyarrow as pa  # noqa: PLC0415 - studies only
    import pyarrow.parquet as pq  # noqa: PLC0415

    names = pq.read_schema(table_path).names
    table = pq.read_table(table_path, columns=[name for name in names if name not in TOKEN_COLUMNS or name in kept])
    metrics = table.column("metrics").type if "metrics" in table.column_names else pa.struct([])
    metric_names = [metrics.field(i).name for i in range(metrics.num_fields)]
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if name == "metrics":
            for metric, values in zip(metric_names, column.flatten()):
                columns[metric] = series(values)
        else:
            columns[name] = series(column)
    frame = pd.DataFrame(columns)
    prompts = {prompt["index"]: prompt for prompt in metadata.get("prompts") or []}
    indices = frame["prompt_index"].tolist()
    for key, value in run.items():
        frame[key] = value
    frame["prompt"] = [prompts[index]["text"] for index in indices]
    for key in ("reference", "reference_tokens", "reference_token_logprobs"):
        frame[key] = [prompts[index].get(key) for index in indices]
    frame["sample"] = range(len(frame))
    frame["p_values"] = None
    frame.attrs = {"settings": [name for name in table.column_names if name not in STUDY_FIELDS],
                   "metrics": metric_names}
    return frame


def series(column) -> pd.Series:
    """A Parquet column as pandas: integers nullable (Int64); per-token lists as NumPy arrays, which
    take a tenth of the time Python lists would at 40,000 samples."""
    import pyarrow as pa  # noqa: PLC0415

    if pa.types.is_integer(column.type):
        return column.to_pandas().astype("Int64")
    if pa.types.is_null(column.type):
        return pd.Series([None] * len(column), dtype=object)
    return column.to_pandas()


def swept_axes(metadata: dict) -> list[str]:
    """The axes a run swept, in the artifact's order (older artifacts: their two switches)."""
    sweeps = metadata.get("sweeps") or {"temperature": metadata.get("temperatures"), "nucleus": metadata.get("nucleus")}
    return [axis for axis, swept in sweeps.items() if swept]


def unique(keys) -> list[str]:
    """Keys in the order first met."""
    return list(dict.fromkeys(keys))
