"""report.html: one self-contained page of a run or sweep dir's samples, token by token, beside its
summary tables and plots (no network: the script, the style, the data and the figures are inline)."""
import base64
import html
import json
import math
import re
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifact import write_bytes_atomic
from .divergence import first_difference, reference_index
from .load import AXES, TOKEN_COLUMNS, load_samples
from .pooled import MEASURED_ARTIFACT_BYTES, artifacts_measurable
from .tables import METRICS, cell, decimals_for, per_setting, plain_number, python_value

REPORT_NAME = "report.html"
# A sample's group: the samples that read one vector of uniforms (one prompt and draw of one seed) on one model.
GROUP_KEYS = ("model", "seed", "prompt_index", "prompt", "draw")
# The filters' axes, beside the settings: which model, prompt and draw a sample comes from.
FILTERS = ("model", "prompt", "draw", *AXES)
LOGPROB_SCALE = 1000  # log p stored as round(-log p * 1000) in 16 bits: 0.001 nats, down to -65.5
UNIFORM_SCALE = 10000  # u stored as round(u * 10000): 4 decimals
# A study's vector of uniforms from (seed, prompt index, draw, count): decoding.sampling.sample_uniforms,
# handed in by the runner or the summary command (analysis does not import the decoding engine).
Uniforms = Callable[[int, int, int, int], Sequence[float]]


def packed(values, dtype) -> str:
    """A flat array of integers as base64 of its little-endian bytes (what the page reads as a typed array)."""
    return base64.b64encode(np.asarray(values, dtype=dtype).astype(np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def packed_counts(values) -> dict:
    """Non-negative integers packed in 16 bits where they fit, else 32: {"bits", "data"}."""
    values = np.asarray(values, dtype=np.int64)
    bits = 16 if not len(values) or values.max() < 2 ** 16 else 32
    return {"bits": bits, "data": packed(values, f"<u{bits // 8}")}


def flat(column: pd.Series, lengths: np.ndarray, dtype) -> np.ndarray:
    """Each row's list (or array) of a per-token column, joined; a row without one counts as zeros."""
    parts = [np.asarray(value, dtype=dtype) if value is not None and not (isinstance(value, float) and math.isnan(value))
             else np.zeros(length, dtype=dtype) for value, length in zip(column, lengths)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def prompt_length(row) -> int | None:
    """The row's prompt tokens; None where the artifact does not say (a hand-made or foreign one)."""
    value = python_value(getattr(row, "prompt_tokens", None))
    return None if value is None else int(value)


def generated_ids(row) -> list[int]:
    """The generated token ids; every token where the prompt's length is unknown."""
    tokens = python_value(row.tokens) if isinstance(row.tokens, float) else row.tokens
    return [] if tokens is None else [int(token) for token in list(tokens)[prompt_length(row) or 0:]]


def group_uniforms(first, length: int, uniforms: Uniforms | None) -> list[float] | None:
    """The u each generated position of the group read: the run's p_values, or the study's vector
    recomputed from its seed, prompt index and draw; None where neither is at hand."""
    prompt_tokens = prompt_length(first)
    if prompt_tokens is None:
        return None
    p_values = first.p_values if "p_values" in first.index else None
    if not isinstance(p_values, (list, tuple, np.ndarray)):
        if python_value(first.seed) is None or uniforms is None:
            return None
        p_values = np.asarray(uniforms(int(first.seed), int(first.prompt_index), int(first.draw), prompt_tokens + length - 1),
                              dtype=np.float64)
    return [float(p_values[prompt_tokens + position - 1]) if prompt_tokens + position - 1 < len(p_values) else None
            for position in range(length)]


def shown_value(axis: str, value) -> str:
    value = python_value(value)
    if value is None:
        return "(none)"
    return plain_number(value) if axis in AXES or axis == "draw" else str(value)


def token_arrays(frame: pd.DataFrame, generated: list[list[int]]) -> dict:
    """The samples' generated tokens as the page reads them: a vocabulary of the token strings used
    (a token's id where an artifact has no strings), and each token's index in it, its log p and the
    size of its step's kept set, packed; starts[i] is sample i's first token."""
    lengths = np.array([len(ids) for ids in generated], dtype=np.int64)
    strings = [np.asarray(value, dtype=object) if value is not None and not isinstance(value, float)
               else np.array([f"#{token}" for token in ids], dtype=object)
               for value, ids in zip(frame["token_strings"], generated)]
    vocabulary_ids, vocabulary = pd.factorize(pd.Series(np.concatenate(strings) if strings else [], dtype=object))
    logprobs = flat(frame["token_logprobs"], lengths, np.float64)
    has_kept = bool(frame["token_kept"].map(lambda value: value is not None and not isinstance(value, float)).any())
    return {
        "vocabulary": [str(value) for value in vocabulary],
        "tokens": packed_counts(vocabulary_ids),
        "logprobs": packed(np.clip(np.round(-np.nan_to_num(logprobs, nan=0.0) * LOGPROB_SCALE), 0, 65535), "<u2"),
        "kept": packed_counts(np.clip(flat(frame["token_kept"], lengths, np.int64), 0, 2 ** 32 - 1)) if has_kept else None,
        "starts": packed(np.concatenate([[0], np.cumsum(lengths)]), "<u4"),
    }


def group_entries(frame: pd.DataFrame, generated: list[list[int]], uniforms: Uniforms | None) -> dict:
    """Each sample's group (GROUP_KEYS) and the position where it departs from its group's reference
    (-1: never, or the reference itself); each group's prompt, reference sample and packed u."""
    group_of = frame[list(GROUP_KEYS)].astype(str).groupby(list(GROUP_KEYS), sort=False).ngroup().to_numpy()
    groups, departs = [], np.full(len(frame), -1, dtype=np.int64)
    settings = [{"temperature": python_value(temperature), "nucleus": python_value(nucleus)}
                for temperature, nucleus in zip(frame["temperature"], frame["nucleus"])]
    for group, rows in enumerate(pd.Series(range(len(frame))).groupby(group_of).apply(list)):
        texts = [settings[row] for row in rows]
        reference = rows[reference_index(texts)]
        for row in rows:
            position = first_difference(generated[row], generated[reference])
            departs[row] = -1 if position is None else position
        first = frame.iloc[rows[0]]
        read = group_uniforms(first, max(len(generated[row]) for row in rows), uniforms)
        groups.append({"prompt": str(python_value(first.prompt) or ""), "prompt_index": int(first.prompt_index),
                       "draw": int(first.draw), "model": str(python_value(first.model) or ""),
                       "seed": python_value(first.seed), "reference": int(reference),
                       "u": None if read is None else packed([round((u or 0) * UNIFORM_SCALE) for u in read], "<u2")})
    return {"group": group_of.tolist(), "departs": departs.tolist(), "groups": groups}


def as_number(text: str) -> float:
    """A value as the page shows it, read back as a number for sorting (inf where it is none)."""
    return float(text.replace(",", "")) if re.fullmatch(r"-?[\d,]+(\.\d+)?", text) else math.inf


def filter_entries(frame: pd.DataFrame) -> list[dict]:
    """Per filter (the prompt, and the model, draw and axes where they vary or are set): its values
    as shown (prompts in order met, the rest sorted as numbers), and each sample's value's index."""
    filters = []
    for axis in FILTERS:
        if axis in AXES and frame[axis].isna().all():
            continue
        values = frame[axis].map(lambda value, axis=axis: shown_value(axis, value))
        distinct = list(dict.fromkeys(values)) if axis == "prompt" else sorted(
            set(values), key=lambda text: (text == "(none)", as_number(text), text))
        if axis in ("model", "draw") and len(distinct) < 2:
            continue
        index = {value: position for position, value in enumerate(distinct)}
        filters.append({"axis": axis, "values": distinct, "of": [index[value] for value in values]})
    return filters


def report_data(samples: pd.DataFrame, uniforms: Uniforms | None = None) -> dict:
    """The page's data: the tokens (token_arrays), groups and departures (group_entries), filters,
    metrics and the per-setting table."""
    frame = samples.reset_index(drop=True).copy()
    for column in (*FILTERS, "seed", "prompt_index", "tokens", "token_strings", "token_logprobs", "token_kept", "p_values"):
        if column not in frame:
            frame[column] = None
    frame["prompt_index"] = frame["prompt_index"].fillna(0)
    frame["draw"] = frame["draw"].fillna(0)
    generated = [generated_ids(row) for row in frame.itertuples(index=False)]
    metrics = [metric for metric in METRICS if metric in frame and pd.to_numeric(frame[metric], errors="coerce").notna().any()]
    return {
        **token_arrays(frame, generated),
        **group_entries(frame, generated, uniforms),
        "filters": filter_entries(frame),
        "metrics": {metric: [None if not math.isfinite(value) else float(f"{value:.4g}")
                             for value in pd.to_numeric(frame[metric], errors="coerce").astype(float)]
                    for metric in metrics},
        "job": frame["job"].astype(str).tolist() if "job" in frame and frame["job"].nunique() > 1 else None,
        "settings": setting_table(samples),
        "logprob_scale": LOGPROB_SCALE,
        "uniform_scale": UNIFORM_SCALE,
    }


def setting_table(samples: pd.DataFrame) -> dict:
    """The per-setting means of summary.md as the page's data: the columns, each row's cells as written
    there, and the filter values that show its samples (the page draws one page of rows at a time: a
    study has a row per prompt and setting)."""
    table = per_setting(samples)
    columns = list(table.columns)
    decimals = {metric: decimals_for(table[metric].dropna()) for metric in METRICS if metric in table}
    rows, jumps = [], []
    for row in table.itertuples(index=False):
        values = dict(zip(columns, row))
        rows.append([cell(column, value, decimals) for column, value in values.items()])
        jumps.append({axis: shown_value(axis, values[axis]) for axis in FILTERS if axis in values})
    return {"columns": columns, "rows": rows, "jumps": jumps}


def markdown_html(markdown: str) -> str:
    """The pooled tables' markdown (headings, paragraphs, pipe tables) as HTML."""
    parts, table = [], []

    def close_table():
        if table:
            header, body = table[0], [line for line in table[2:]]
            cells = lambda line: [html.escape(value.strip().replace("\\|", "|")) for value in re.split(r"(?<!\\)\|", line.strip()[1:-1])]  # noqa: E731
            parts.append('<table class="summary"><thead><tr>' + "".join(f'<th scope="col">{c}</th>' for c in cells(header))
                         + "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(line)) + "</tr>"
                                                            for line in body) + "</tbody></table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        close_table()
        heading = re.match(r"(#+) (.*)", line)
        if heading:
            level = min(len(heading.group(1)) + 1, 6)
            parts.append(f"<h{level}>{html.escape(heading.group(2))}</h{level}>")
        elif line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    close_table()
    return "\n".join(parts)


def figure_html(path: Path) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    name = Path(path).stem.replace("_", " ")
    return (f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(name)} of the samples"'
            f' loading="lazy"><figcaption>{html.escape(Path(path).name)}</figcaption></figure>')


def report_html(samples: pd.DataFrame, title: str, pooled_markdown: str = "", figures=(), note: str = "",
                uniforms: Uniforms | None = None) -> str:
    """The page: the summary (per-setting means, pooled tables, figures), then the samples' view."""
    template = resources.files(__package__).joinpath("report_page.html").read_text(encoding="utf-8")
    data = json.dumps(report_data(samples, uniforms), ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    summary = markdown_html(pooled_markdown)
    plots = "".join(figure_html(path) for path in figures)
    replacements = {"{{TITLE}}": html.escape(title), "{{SUMMARY}}": summary, "{{NOTE}}": html.escape(note),
                    "{{FIGURES}}": plots or "<p>No figures: a sweep dir's summary draws them where some run swept an axis.</p>",
                    "{{COUNT}}": f"{len(samples):,}", "{{DATA}}": data}
    return re.sub("|".join(re.escape(key) for key in replacements), lambda found: replacements[found.group(0)], template)


def write_report(directory: Path, samples: pd.DataFrame, pooled_markdown: str = "", figures=(), note: str = "",
                 uniforms: Uniforms | None = None) -> Path:
    """report.html in directory, written atomically; its path. uniforms: how a study's vectors are
    recomputed (without it a study's tokens show no u)."""
    directory = Path(directory)
    path = directory / REPORT_NAME
    write_bytes_atomic(path, report_html(samples, f"Samples of {directory.name}", pooled_markdown, figures, note, uniforms)
                       .encode("utf-8"))
    return path


def write_run_report(directory: Path, uniforms: Uniforms | None = None) -> Path:
    """A single run's report.html: its samples and their means per setting (the summary command adds
    the pooled tables and the figures); the tokens left out, as the summary leaves them out, where the
    run's artifacts are too large to load them (pooled.artifacts_measurable)."""
    measured = artifacts_measurable(directory)
    note = f"python -m gpt2_sweep.summarize {directory} adds the pooled tables and the figures."
    if not measured:
        note = (f"The tokens are left out: the artifacts exceed the {MEASURED_ARTIFACT_BYTES // 2 ** 20} MiB whose "
                f"per-token lists the page loads. {note}")
    samples = load_samples(directory, tokens=TOKEN_COLUMNS if measured else ())
    return write_report(directory, samples, uniforms=uniforms, note=note)
