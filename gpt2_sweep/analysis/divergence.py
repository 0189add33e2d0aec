"""Where two samples part: the first generated position at which their tokens differ.

Samples of one run read the same uniform at each position, so up to that position they agree and
from there on each follows its own text.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Pick:
    """The token one sample picked at a position: id, text and log p under the model (untempered)."""

    token_id: int
    token_string: str | None
    logprob: float | None


@dataclass(frozen=True)
class Divergence:
    """position counts generated tokens from 0; sequence_position (t) counts the prompt's too.
    A pick is None where that sample has already ended; u is None where it is not known or the two
    samples read different uniforms (different seeds)."""

    position: int
    sequence_position: int
    u: float | None
    a: Pick | None
    b: Pick | None


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first index where two token lists differ, or where the shorter one ends; None if equal."""
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def first_divergence(a, b, p_values: list[float] | None = None) -> Divergence | None:
    """The first generated position where samples a and b differ, and what each picked there.

    a and b are text entries of an artifact or rows of gpt2_sweep.load's table; u comes from
    p_values (position t reads p_values[t - 1]), by default the rows' own p_values column.
    None where both generated the same tokens.
    """
    tokens_a, tokens_b = field(a, "tokens"), field(b, "tokens")
    if tokens_a is None or tokens_b is None:
        raise ValueError("a sample without tokens (an artifact older than the token ids) cannot be compared")
    prompt_a, prompt_b = int(field(a, "prompt_tokens")), int(field(b, "prompt_tokens"))
    if list(tokens_a[:prompt_a]) != list(tokens_b[:prompt_b]):
        raise ValueError("the two samples continue different prompts")
    position = first_difference(list(tokens_a[prompt_a:]), list(tokens_b[prompt_b:]))
    if position is None:
        return None
    t = prompt_a + position
    return Divergence(position=position, sequence_position=t, u=uniform_at(t, a, b, p_values),
                      a=pick(a, position), b=pick(b, position))


def field(sample, key: str):
    """A value of a text entry (dict) or a table row (pandas Series); None where absent or NaN."""
    value = sample.get(key)
    return None if isinstance(value, float) and value != value else value


def pick(sample, position: int) -> Pick | None:
    generated = list(field(sample, "tokens"))[int(field(sample, "prompt_tokens")):]
    if position >= len(generated):
        return None
    strings, logprobs = field(sample, "token_strings"), field(sample, "token_logprobs")
    return Pick(token_id=int(generated[position]),
                token_string=strings[position] if strings is not None else None,
                logprob=logprobs[position] if logprobs is not None else None)


def uniform_at(t: int, a, b, p_values) -> float | None:
    """p[t - 1] of the given p_values, or of both samples' own where they agree on it."""
    if p_values is not None:
        return p_values[t - 1] if t - 1 < len(p_values) else None
    read = [field(sample, "p_values") for sample in (a, b)]
    if any(p is None or t - 1 >= len(p) for p in read) or read[0][t - 1] != read[1][t - 1]:
        return None
    return read[0][t - 1]


def reference_index(texts: list[dict]) -> int:
    """The sample others are compared with: the first greedy one (temperature or nucleus 0), else
    the first."""
    return next((index for index, sample in enumerate(texts)
                 if sample.get("temperature") == 0 or sample.get("nucleus") == 0), 0)


def divergence_from_reference(texts: list[dict]) -> list[int | None]:
    """Per sample, the first generated position where it departs from the run's reference sample;
    None for the reference itself and for samples identical to it."""
    reference = texts[reference_index(texts)]
    reference_generated = reference["tokens"][reference["prompt_tokens"]:]
    return [first_difference(sample["tokens"][sample["prompt_tokens"]:], reference_generated)
            for sample in texts]
