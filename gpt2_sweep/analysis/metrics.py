"""Per-sample measures of Holtzman et al. (2019): likelihood, entropy, diversity, repetition."""
import math


def ngrams(tokens: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(tokens: list[int], n: int) -> float | None:
    """Unique n-grams over all n-grams; None where the text has none."""
    grams = ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else None


def repetition(tokens: list[int], n: int = 4) -> float | None:
    """The share of n-grams that already occurred earlier in the same tokens; None where none."""
    grams = ngrams(tokens, n)
    if not grams:
        return None
    seen, repeats = set(), 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def sample_metrics(generated: list[int], logprobs: list[float], entropies: list[float],
                   support_sizes: list[int]) -> dict:
    """Metrics of one sample's generated tokens (the prompt excluded), given per-step statistics.

    mean_nucleus_size is the mean over steps of the support size: the tokens the rule can pick, those
    the filters keep whose mass is at least one unit of 2**-28 (a token with a smaller probability,
    though not 0 as a float, is never picked)."""
    count = len(generated)
    logprob = sum(logprobs)
    return {
        "generated_tokens": count,
        "logprob": logprob,
        "perplexity": math.exp(-logprob / count) if count else None,
        "mean_entropy": sum(entropies) / count if count else None,
        "mean_nucleus_size": sum(support_sizes) / count if count else None,
        "distinct_1": distinct_n(generated, 1),
        "distinct_2": distinct_n(generated, 2),
        "distinct_3": distinct_n(generated, 3),
        "repetition": repetition(generated, 4),
    }
