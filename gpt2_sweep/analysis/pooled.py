"""The summary's pooled tables: Holtzman et al.'s Table 1 (study_table) per model and group of runs
that share their fixed settings, as summary_pooled.csv and a section of summary.md."""
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..artifact import ARTIFACT_NAME, SAMPLE_NEUTRAL_KEYS, read_json
from .intervals import CONFIDENCE, RESAMPLES
from .study_table import study_markdown, study_table

# Config keys a pooled table pools over or keys its rows by: which prompts (a slice of a set, or a
# one-prompt run's prompt), seeds and draws, the settings' values, and how the samples were computed.
# Runs that differ only in these share a table; runs that differ in any other key (model, max_length,
# max_new_tokens, stop_at_eos, the prompt file, ...) get one each.
POOLED_KEYS = ("prompt", "prompt_set.offset", "prompt_set.limit", "prompt_set.pick", "seed", "draws", "num_samples",
               "sampler", "batch_size", "runtime", "devices", "output_json", *SAMPLE_NEUTRAL_KEYS)
# The measures across samples read every sample's token ids and log p: loaded where the dir's
# artifacts (samples.json and samples.parquet files) take at most this many bytes, so that a huge
# dir's summary keeps to the memory of its per-sample metrics.
MEASURED_ARTIFACT_BYTES = 256 * 2 ** 20
MEASURE_COLUMNS = ("tokens", "token_logprobs")


@dataclass
class PooledTable:
    title: str                # the model, and the fixed settings its runs differ in from the model's other tables
    table: pd.DataFrame       # study_table's rows
    notes: list[str]          # what the reader must know about this table's numbers


def artifacts_measurable(directory: Path) -> bool:
    """Whether the artifacts under directory are small enough to load their token ids and log p."""
    files = [*directory.rglob(ARTIFACT_NAME), *directory.rglob("*.parquet")]
    return sum(path.stat().st_size for path in files) <= MEASURED_ARTIFACT_BYTES


def flattened(config: dict, prefix: str = "") -> dict:
    """A nested config as {dotted key: value}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def fixed_settings(metadata: dict) -> dict:
    """A run's config without POOLED_KEYS, dotted; stop_at_eos from the metadata where an older
    artifact has no config."""
    config = flattened(metadata.get("config") or {})
    kept = {key: value for key, value in config.items()
            if not any(key == pooled or key.startswith(pooled + ".") for pooled in POOLED_KEYS)}
    kept.pop("model.name", None)  # the model column names it
    if "stop_at_eos" not in kept and metadata.get("stop_at_eos") is not None:
        kept["stop_at_eos"] = metadata["stop_at_eos"]
    return kept


def run_metadata(samples: pd.DataFrame) -> dict[str, dict]:
    """Each artifact's metadata (read again: load() keeps none of it), by the artifact's path."""
    return {artifact: (read_json(Path(artifact)) or {}).get("metadata") or {}
            for artifact in samples["artifact"].unique()}


def stop_token(metadata: list[dict]) -> tuple[int | None, list[str]]:
    """The token id the runs stopped at (stop_at_eos), and a note where some run stopped at one that
    its artifact does not name (one-prompt runs and older studies): repetition % then counts it."""
    stopping = [run for run in metadata if run.get("stop_at_eos")]
    ids = {run["stop_token_id"] for run in stopping if run.get("stop_token_id") is not None}
    if stopping and (len(ids) != 1 or any(run.get("stop_token_id") is None for run in stopping)):
        return (next(iter(ids)) if len(ids) == 1 else None), [
            "Runs with stop_at_eos whose artifact does not name the stop token: Repetition % counts a "
            "sample's final stop token as a token, where Holtzman et al. drop it."]
    return (next(iter(ids)) if ids else None), []


def pooled_tables(samples: pd.DataFrame, measured: bool = True) -> list[PooledTable]:
    """One study_table per model and set of fixed settings (fixed_settings), models in name order,
    each with its notes. measured=False: samples without token ids (a huge dir), the measures across
    samples left empty and said so."""
    metadata = run_metadata(samples)
    fixed = {artifact: fixed_settings(run) for artifact, run in metadata.items()}
    keys = samples["artifact"].map(lambda artifact: json.dumps(fixed[artifact], sort_keys=True, default=str))
    tables = []
    models = samples["model"].astype(object).where(samples["model"].notna(), "(unknown model)")
    for model, of_model in samples.groupby(models, sort=True):
        groups = list(of_model.groupby(keys[of_model.index], sort=False))
        settings = [json.loads(key) for key, _ in groups]
        differing = sorted({name for setting in settings for name in setting
                            if len({json.dumps(other.get(name), default=str) for other in settings}) > 1})
        for (key, group), setting in zip(groups, settings):
            shown = ", ".join(f"{name}={setting.get(name)}" for name in differing)
            stop_token_id, notes = stop_token([metadata[artifact] for artifact in group["artifact"].unique()])
            if not measured:
                notes.append("The samples' Perplexity, Self-BLEU4, Zipf coefficient and Repetition % left out "
                             "(the Human row's are measured: its tokens are stored once per prompt): the dir's "
                             f"artifacts exceed the {MEASURED_ARTIFACT_BYTES // 2 ** 20} MiB whose token ids the "
                             "summary loads; gpt2_sweep.analysis.study_table.study_table(gpt2_sweep.load(DIR)) "
                             "measures them.")
            tables.append(PooledTable(f"{model}" + (f" ({shown})" if shown else ""),
                                      study_table(group.reset_index(drop=True), stop_token_id=stop_token_id), notes))
    return tables


def pooled_csv(tables: list[PooledTable], path: Path) -> None:
    """summary_pooled.csv: every pooled table's rows, each named by its table's title."""
    frame = pd.concat([table.table.assign(table=table.title) for table in tables], ignore_index=True)
    frame = frame[["table", *(column for column in frame.columns if column != "table")]]
    frame.to_csv(path, index=False, encoding="utf-8")


def pooled_markdown(tables: list[PooledTable]) -> str:
    """summary.md's section of pooled tables."""
    lines = ["", "## Pooled over prompts and draws", "",
             "Holtzman et al.'s Table 1 per model and set of fixed settings: each setting's samples pooled over "
             "prompts and draws, the human references first (Human, where the prompts have them). Perplexity "
             "(corpus perplexity), Self-BLEU4, Zipf coefficient and Repetition % are measured across all of a "
             "setting's samples (their generated tokens); each column after them is a per-sample metric's mean "
             f"with its {CONFIDENCE:.0%} bootstrap interval in brackets ({RESAMPLES:,} resamples of the prompts, "
             "the independent unit; none with a single prompt). n: samples; Prompts: how many prompts they come "
             "from.", ""]
    for table in tables:
        lines += [f"### {table.title}", "", study_markdown(table.table).rstrip("\n")]
        lines += [""] + table.notes if table.notes else []
        lines.append("")
    return "\n".join(lines)
