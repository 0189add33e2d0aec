"""Measures across a set of samples, as Holtzman et al. (2019, Table 1) define them: Self-BLEU-4,
the Zipf coefficient, repetition % and corpus perplexity, over token ids (the prompt excluded).

Each follows the paper's released code (github.com/ari-holtzman/degen, metrics/): self_bleu.py,
zipf.py, repetition.py and perplexity.py.
"""
import math
from collections.abc import Sequence

import numpy as np

BLEU_ORDER = 4                 # BLEU-4: uniform weights over 1- to 4-grams
SELF_BLEU_HYPOTHESES = 1000    # samples scored, each against all the others
ZIPF_RANKS = 5000              # the most frequent tokens the Zipf fit uses
LONGEST_PHRASE = 90            # the longest phrase the repetition rule looks for
SHORTEST_PHRASE = 3            # a shorter phrase counts only when repeated ...
SHORT_PHRASE_REPEATS = 50      # ... more than this many times


def self_bleu(samples: Sequence[Sequence[int]], hypotheses: int = SELF_BLEU_HYPOTHESES,
              seed: int = 0) -> float | None:
    """Self-BLEU-4 as in Holtzman et al.'s metrics/self_bleu.py: up to `hypotheses` samples, drawn
    with `seed` (numpy.random.default_rng(seed).choice(len(samples), hypotheses, replace=False); all
    of them when there are no more), each scored by BLEU-4 with nltk's smoothing method 1 against
    ALL the other samples as references; the mean of those scores. None for fewer than two samples.
    Equal to the mean of nltk's sentence_bleu(others, hypothesis,
    smoothing_function=SmoothingFunction().method1) to the last bit (tests compare them).

    Why not call sentence_bleu: it recounts every reference's n-grams for every hypothesis, 1.3 s
    for one hypothesis against 999 references of 200 tokens on the 2-core machine, so 22 minutes for
    1,000 hypotheses (an hour and three quarters against 4,999 references each). BLEU needs of the
    references only, for each n-gram of the hypothesis, the largest count any other sample holds,
    and the reference length closest to the hypothesis's: both are counted once for all samples here
    (numpy), and nltk's own Fraction, smoothing and brevity penalty turn them into the score
    (1,000 samples of 200 tokens: about 1 s; 5,000: 6 s).
    """
    if len(samples) < 2:
        return None
    samples = [[int(token) for token in sample] for sample in samples]
    drawn = np.arange(len(samples))
    if len(samples) > hypotheses:
        drawn = np.sort(np.random.default_rng(seed).choice(len(samples), hypotheses, replace=False))
    clipped = [clipped_ngram_counts(samples, n) for n in range(1, BLEU_ORDER + 1)]
    lengths = np.array([len(sample) for sample in samples])
    scores = [bleu_from_counts([int(matches[hypothesis]) for matches in clipped], int(lengths[hypothesis]),
                               closest_other_length(lengths, hypothesis))
              for hypothesis in drawn]
    return float(np.mean(scores))


def bleu_from_counts(matches: list[int], length: int, closest_reference_length: int) -> float:
    """nltk's sentence_bleu (uniform weights, SmoothingFunction().method1) from the hypothesis's
    clipped n-gram matches of each order, its length and the closest reference length: the last
    steps of nltk.translate.bleu_score.corpus_bleu, with nltk's own pieces."""
    # imported here: all of nltk loads with it (about a second), which summaries without BLEU skip
    from nltk.translate.bleu_score import Fraction, SmoothingFunction, brevity_penalty

    if matches[0] == 0:
        return 0.0
    precisions = [Fraction(matched, max(1, length - order + 1), _normalize=False)
                  for order, matched in enumerate(matches, start=1)]
    smoothed = SmoothingFunction().method1(precisions)
    weight = 1 / len(matches)
    return brevity_penalty(closest_reference_length, length) * math.exp(
        math.fsum(weight * math.log(precision) for precision in smoothed if precision > 0))


def closest_other_length(lengths: np.ndarray, hypothesis: int) -> int:
    """The length of the other samples closest to the hypothesis's, the shorter among ties (nltk's
    closest_ref_length)."""
    distance = np.abs(lengths - lengths[hypothesis]).astype(float)
    distance[hypothesis] = math.inf
    return int(lengths[np.lexsort((lengths, distance))[0]])


def clipped_ngram_counts(samples: list[list[int]], n: int) -> np.ndarray:
    """Per sample, BLEU's matched n-grams against all the other samples: the sum over its distinct
    n-grams of min(its count, the largest count any other sample holds)."""
    ids, owners = ngram_ids(samples, n)
    if not ids.size:
        return np.zeros(len(samples), dtype=np.int64)
    distinct = int(ids.max()) + 1
    pairs, counts = np.unique(owners * distinct + ids, return_counts=True)
    sample, ngram = pairs // distinct, pairs % distinct
    # per n-gram, its largest count and who holds it, and the next largest count (0: no one else)
    order = np.lexsort((-counts, ngram))
    first = np.ones(order.size, dtype=bool)
    first[1:] = ngram[order][1:] != ngram[order][:-1]
    top = order[first]
    top_holder = np.empty(distinct, dtype=np.int64)
    top_count = np.empty(distinct, dtype=np.int64)
    top_holder[ngram[top]], top_count[ngram[top]] = sample[top], counts[top]
    runner_up = np.zeros(distinct, dtype=np.int64)
    followed = np.append(~first[1:], False)  # the next entry holds the same n-gram
    second = order[np.flatnonzero(first & followed) + 1]
    runner_up[ngram[second]] = counts[second]
    most_elsewhere = np.where(top_holder[ngram] != sample, top_count[ngram], runner_up[ngram])
    return np.bincount(sample, weights=np.minimum(counts, most_elsewhere), minlength=len(samples)).astype(np.int64)


def ngram_ids(samples: list[list[int]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every n-gram of every sample as a dense id (equal n-grams, equal ids), and its sample."""
    lengths = np.array([len(sample) for sample in samples], dtype=np.int64)
    tokens = np.array([token for sample in samples for token in sample], dtype=np.int64)
    owners = np.repeat(np.arange(len(samples)), np.maximum(lengths - n + 1, 0))
    ends = np.cumsum(lengths)
    starts = np.concatenate([np.arange(end - length, end - n + 1, dtype=np.int64)
                             for end, length in zip(ends, lengths)] + [np.zeros(0, dtype=np.int64)])
    if not starts.size:
        return starts, owners
    _, ids = np.unique(tokens[starts], return_inverse=True)
    for offset in range(1, n):
        # a (k+1)-gram is a k-gram followed by a token: pair the ids, then renumber densely
        _, ids = np.unique(ids * (int(tokens.max()) + 1) + tokens[starts + offset], return_inverse=True)
    return ids.reshape(-1), owners


def zipf_coefficient(samples: Sequence[Sequence[int]], ranks: int = ZIPF_RANKS) -> float | None:
    """Minus the slope of the least-squares line of log frequency on log rank (1, 2, ...) over the
    `ranks` most frequent tokens of all samples. None with fewer than two distinct tokens."""
    tokens = np.array([token for sample in samples for token in sample], dtype=np.int64)
    frequencies = np.sort(np.unique(tokens, return_counts=True)[1])[::-1][:ranks]
    if frequencies.size < 2:
        return None
    slope = np.polyfit(np.log(np.arange(1, frequencies.size + 1)), np.log(frequencies), 1)[0]
    return float(-slope)


def ends_in_repetition(tokens: Sequence[int], stop_token_id: int | None = None) -> bool:
    """Whether a sample ends in a repeating phrase, by Holtzman et al.'s rule (metrics/repetition.py):
    drop one final stop token; for each phrase length n from 1 to 90, count how many times the last n
    tokens occur back to back at the end; take the n with the most occurrences (the shortest among
    ties). The sample repeats if that phrase occurs at least twice and is at least 3 tokens long,
    or occurs more than 50 times. So '... a b c a b c' repeats; '... a b a b a b' (a 2-token phrase,
    3 times) and '... a a a a' (1 token, 4 times) do not."""
    tokens = list(tokens)
    if tokens and stop_token_id is not None and tokens[-1] == stop_token_id:
        tokens.pop()
    best_length, best_times = 1, 0
    for length in range(1, min(LONGEST_PHRASE, len(tokens)) + 1):
        phrase, times = tokens[len(tokens) - length:], 1
        while (times + 1) * length <= len(tokens) and \
                tokens[len(tokens) - (times + 1) * length:len(tokens) - times * length] == phrase:
            times += 1
        if times > best_times:
            best_length, best_times = length, times
    return best_times > 1 and (best_length >= SHORTEST_PHRASE or best_times > SHORT_PHRASE_REPEATS)


def repetition_percent(samples: Sequence[Sequence[int]], stop_token_id: int | None = None) -> float | None:
    """The share of samples that end in a repeating phrase (ends_in_repetition), in percent."""
    if not len(samples):
        return None
    return 100 * sum(ends_in_repetition(sample, stop_token_id) for sample in samples) / len(samples)


def corpus_perplexity(logprobs: Sequence[Sequence[float]]) -> float | None:
    """exp(minus the total log p over the total number of tokens) of all samples together: each token
    weighs the same, so a long sample weighs more than a short one. None without tokens."""
    count = sum(len(values) for values in logprobs)
    if not count:
        return None
    return math.exp(-math.fsum(value for values in logprobs for value in values) / count)


def across_sample_measures(samples: Sequence[Sequence[int]], logprobs: Sequence[Sequence[float]] | None,
                           seed: int = 0, stop_token_id: int | None = None,
                           hypotheses: int = SELF_BLEU_HYPOTHESES) -> dict:
    """Table 1's four measures of one set of samples (token ids and, for perplexity, their log p)."""
    return {
        "corpus_perplexity": corpus_perplexity(logprobs) if logprobs is not None else None,
        "self_bleu4": self_bleu(samples, hypotheses, seed),
        "zipf_coefficient": zipf_coefficient(samples),
        "repetition_percent": repetition_percent(samples, stop_token_id),
    }
