"""Holtzman et al.'s Table 1 per setting, pooled over prompts and draws: the across-sample measures,
each per-sample metric's mean with its 95% prompt-bootstrap interval, the Human row first; and its
markdown."""
import math

import numpy as np
import pandas as pd

from .intervals import CONFIDENCE, RESAMPLES, cluster_bootstrap
from .measures import SELF_BLEU_HYPOTHESES, across_sample_measures
from .metrics import distinct_n, repetition

SETTING_COLUMNS = ("model", "temperature", "nucleus", "top_k", "min_p")
TABLE1_MEASURES = {
    "corpus_perplexity": "Perplexity",
    "self_bleu4": "Self-BLEU4",
    "zipf_coefficient": "Zipf coefficient",
    "repetition_percent": "Repetition %",
}
SAMPLE_METRICS = {
    "perplexity": "Perplexity per sample",
    "mean_entropy": "Entropy (nats)",
    "mean_nucleus_size": "Tokens kept",
    "distinct_1": "Distinct-1",
    "distinct_2": "Distinct-2",
    "distinct_3": "Distinct-3",
    "repetition": "Repeated 4-grams",
}
HUMAN = "Human"


def study_table(samples: pd.DataFrame, references: pd.DataFrame | None = None, *, metrics=None,
                resamples: int = RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE,
                self_bleu_hypotheses: int = SELF_BLEU_HYPOTHESES,
                stop_token_id: int | None = None) -> pd.DataFrame:
    """One row per setting (model, temperature, nucleus, and top_k / min_p where some sample has
    them) pooled over prompts and draws, after the Human row(s):
    method, the setting, n (samples), prompts, Table 1's measures (corpus_perplexity, self_bleu4,
    zipf_coefficient, repetition_percent: gpt2_sweep.analysis.measures), then for each per-sample
    metric m (default: those of SAMPLE_METRICS the frame has) its mean over the samples, m, and its
    interval, m_low and m_high (analysis.intervals, prompts resampled).

    `samples` is gpt2_sweep.load()'s frame: one row per sample with tokens, prompt_tokens,
    token_logprobs and the metrics; a prompt is named by prompt_index, else by its text (a run of
    one prompt: one prompt). `references`: one row per prompt (and model) with prompt_index,
    reference_tokens (the human continuation's token ids) and reference_token_logprobs (the model's
    log p of each); without it, those columns of `samples` where it has them. The Human row has the
    same measures, its perplexity under the model (one Human row per model), and no entropy or
    tokens kept (nan)."""
    prompts = prompt_clusters(samples)
    metrics = [metric for metric in (metrics or SAMPLE_METRICS) if metric in samples.columns]
    axes = [axis for axis in SETTING_COLUMNS if axis in samples.columns and samples[axis].notna().any()]
    references = references_of(samples, prompts) if references is None else references
    if "reference_tokens" in references.columns:  # a prompt without a reference has no part in it
        references = references[references["reference_tokens"].map(listed)]
    rows = [human_row(group, metrics, resamples=resamples, seed=seed, confidence=confidence,
                      self_bleu_hypotheses=self_bleu_hypotheses, stop_token_id=stop_token_id)
            | ({"model": model} if "model" in axes else {})
            for model, group in grouped(references, "model" if "model" in references else None)]
    for setting, group in samples.groupby(axes, dropna=False, sort=True) if axes else [((), samples)]:
        setting = dict(zip(axes, setting if isinstance(setting, tuple) else (setting,)))
        clusters = prompts.loc[group.index].to_numpy()
        rows.append({"method": method_name(setting), **setting,
                     **pooled_row(generated_tokens(group), list_column(group, "token_logprobs"),
                                  group[metrics].astype(float).to_numpy(), clusters, metrics,
                                  resamples=resamples, seed=seed, confidence=confidence,
                                  self_bleu_hypotheses=self_bleu_hypotheses, stop_token_id=stop_token_id)})
    columns = ["method", *axes, "n", "prompts", *TABLE1_MEASURES,
               *[name for metric in metrics for name in (metric, f"{metric}_low", f"{metric}_high")]]
    return pd.DataFrame(rows, columns=columns)


def pooled_row(tokens: list[list[int]], logprobs: list[list[float]] | None, values: np.ndarray,
               clusters: np.ndarray, metrics: list[str], **options) -> dict:
    """n, prompts, Table 1's measures and the metrics' means and intervals of one set of samples."""
    intervals = cluster_bootstrap(values, clusters, resamples=options["resamples"], seed=options["seed"],
                                  confidence=options["confidence"]) if len(values) else []
    return {
        "n": len(values),
        "prompts": len(set(clusters.tolist())),
        **across_sample_measures(tokens, logprobs, seed=options["seed"], stop_token_id=options["stop_token_id"],
                                 hypotheses=options["self_bleu_hypotheses"]),
        **{name: value for metric, interval in zip(metrics, intervals)
           for name, value in ((metric, interval.mean), (f"{metric}_low", interval.low),
                               (f"{metric}_high", interval.high))},
    }


def human_row(references: pd.DataFrame, metrics: list[str], **options) -> dict:
    """The Human row: the measures of the reference continuations, one per prompt."""
    tokens = [[int(token) for token in listed] for listed in references["reference_tokens"]]
    logprobs = list_column(references, "reference_token_logprobs")
    per_reference = pd.DataFrame([reference_metrics(listed, logprobs[index] if logprobs else None)
                                  for index, listed in enumerate(tokens)], columns=list(SAMPLE_METRICS))
    clusters = np.asarray(references["prompt_index"] if "prompt_index" in references else np.arange(len(tokens)))
    return {"method": HUMAN, **pooled_row(tokens, logprobs, per_reference.reindex(columns=metrics).astype(float)
                                          .to_numpy(), clusters, metrics, **options)}


def reference_metrics(tokens: list[int], logprobs: list[float] | None) -> dict:
    """The per-sample metrics a human continuation has (no sampled distribution: no entropy)."""
    return {
        "perplexity": math.exp(-math.fsum(logprobs) / len(logprobs)) if logprobs else None,
        "distinct_1": distinct_n(tokens, 1),
        "distinct_2": distinct_n(tokens, 2),
        "distinct_3": distinct_n(tokens, 3),
        "repetition": repetition(tokens, 4),
    }


def prompt_clusters(samples: pd.DataFrame) -> pd.Series:
    """Each sample's prompt, the unit the bootstrap resamples, as a code: its prompt_index and its
    prompt text together (slices of a study keep the set's indices; one-prompt runs, each index 0, are
    told apart by their text); one prompt for all where neither is known."""
    known = [column for column in ("prompt_index", "prompt")
             if column in samples.columns and samples[column].notna().any()]
    if not known:
        return pd.Series(0, index=samples.index)
    return samples[known].astype(object).groupby(known, dropna=False, sort=False).ngroup()


def references_of(samples: pd.DataFrame, prompts: pd.Series) -> pd.DataFrame:
    """The reference continuations the samples' rows carry, once per prompt (and model)."""
    if "reference_tokens" not in samples.columns:
        return pd.DataFrame(columns=["prompt_index", "reference_tokens"])
    keyed = samples.assign(prompt_index=prompts)
    keyed = keyed[keyed["reference_tokens"].map(listed)]
    keys = ["model", "prompt_index"] if "model" in keyed.columns else ["prompt_index"]
    return keyed.drop_duplicates(keys)


def grouped(frame: pd.DataFrame, column: str | None):
    """(value, rows) per value of column, or one group of all rows; no group for no rows."""
    if frame.empty:
        return []
    if column is None:
        return [(None, frame)]
    return list(frame.groupby(column, dropna=False, sort=True))


def generated_tokens(samples: pd.DataFrame) -> list[list[int]]:
    """Each sample's generated token ids, the prompt excluded; samples of artifacts that stored no
    tokens (older versions) left out."""
    if "tokens" not in samples.columns:
        return []
    return [[int(token) for token in tokens[int(prompt_length or 0):]]
            for tokens, prompt_length in zip(samples["tokens"], samples["prompt_tokens"]) if listed(tokens)]


def listed(value) -> bool:
    """Whether a cell holds a list (a missing field of an older artifact holds None)."""
    return isinstance(value, (list, tuple, np.ndarray))


def list_column(frame: pd.DataFrame, column: str) -> list | None:
    """A column of lists as a list, or None where some row lacks it (older artifacts)."""
    if column not in frame.columns:
        return None
    values = list(frame[column])
    return values if all(listed(value) for value in values) else None


def method_name(setting: dict) -> str:
    """A setting named as in Table 1: Greedy, Pure sampling, Sampling t=0.9, Top-k k=40,
    Nucleus p=0.95, Min-p p=0.1; filters together joined by ' + ', then t where it is not 1; a
    greedy setting's filters (which change nothing) in brackets, so that no two settings share a name."""
    def given(value):
        return value is not None and not pd.isna(value)
    temperature = setting.get("temperature")
    filters = " + ".join(f"{name} {symbol}={value:g}" for name, symbol, value, off in (
        ("Nucleus", "p", setting.get("nucleus"), 1), ("Top-k", "k", setting.get("top_k"), 0),
        ("Min-p", "p", setting.get("min_p"), 0)) if given(value) and value != off)
    if given(temperature) and temperature == 0:
        return f"Greedy ({filters})" if filters else "Greedy"
    heated = given(temperature) and temperature != 1
    if not filters:
        return f"Sampling t={temperature:g}" if heated else "Pure sampling"
    return filters + (f", t={temperature:g}" if heated else "")


def study_markdown(table: pd.DataFrame) -> str:
    """study_table's table as markdown: Method (and Model where there are several), n, Prompts,
    Table 1's measures, then each metric as 'mean [low, high]'; numbers in fixed notation to three
    significant digits, missing ones as '-'."""
    several_models = "model" in table.columns and table["model"].nunique(dropna=True) > 1
    metrics = [column for column in table.columns if f"{column}_low" in table.columns]
    header = ["Method", *(["Model"] if several_models else []), "n", "Prompts", *TABLE1_MEASURES.values(),
              *[f"{SAMPLE_METRICS.get(metric, metric)} [{CONFIDENCE:.0%} CI]" for metric in metrics]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.to_dict("records"):
        cells = [row["method"], *([str(row["model"]) if row["model"] is not None else ""] if several_models else []),
                 str(row["n"]), str(row["prompts"]), *[fixed(row[measure]) for measure in TABLE1_MEASURES],
                 *[with_interval(row[metric], row[f"{metric}_low"], row[f"{metric}_high"]) for metric in metrics]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


ROUNDING_ZERO = 1e-12  # below this a value is float rounding of zero


def decimals(value: float, digits: int = 3) -> int:
    """Decimal places that show `digits` significant digits of value (none for large values)."""
    return max(0, digits - 1 - math.floor(math.log10(abs(value)))) if value else 0


def fixed(value, places: int | None = None) -> str:
    """A number in fixed notation, never with an exponent; '-' where missing; 0 for a value within
    float rounding of zero (a least-squares slope of 3e-16 is a slope of 0), never '-0'."""
    if value is None or pd.isna(value):
        return "-"
    if abs(value) < ROUNDING_ZERO:
        return "0"
    text = f"{value:.{decimals(value) if places is None else places}f}"
    return text.lstrip("-") if float(text) == 0 else text


def with_interval(mean, low, high) -> str:
    """'12.3 [11.8, 12.9]': the interval's bounds to the mean's decimal places."""
    if mean is None or pd.isna(mean):
        return "-"
    if low is None or pd.isna(low) or high is None or pd.isna(high):
        return fixed(mean)
    places = decimals(mean)
    return f"{fixed(mean, places)} [{fixed(low, places)}, {fixed(high, places)}]"
