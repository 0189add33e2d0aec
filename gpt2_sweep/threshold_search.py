"""The rule's picks without sorting: fixed shapes and no host synchronisation, for a captured or
compiled decode step. Gives exactly the tokens and statistics of sampling.sample_step.

Probabilities order like the bit patterns of their floats (all are >= 0). Per row, the value at
which the cumulative mass in descending order first reaches a limit is found digit by digit over
those bit patterns, 2**DIGIT_BITS - 1 thresholds a pass; the tokens of that value are then ranked
by id, as the rule breaks ties.
"""
import torch

from .sampling import Step, masses, nucleus_limits, pick_limits, prepared, step_of

DIGIT_BITS = 5
KEY_BITS = {torch.float32: 30, torch.float64: 62}  # the bit patterns of values in [0, 1] fit in these
KEY_DTYPES = {torch.float32: torch.int32, torch.float64: torch.int64}


def reaching(keys, token_masses, limits, key_bits: int):
    """Per row, the token at which the cumulative mass in descending order first reaches `limits`
    (each between 1 and the row's total mass): (token id, its key, the cumulative mass through it)."""
    value = torch.zeros(len(keys), dtype=keys.dtype, device=keys.device)
    digits = torch.arange(1, 2**DIGIT_BITS, dtype=keys.dtype, device=keys.device)
    # The last pass may overlap bits already found: thresholds past the answer never count.
    shifts = [*range(key_bits - DIGIT_BITS, -1, -DIGIT_BITS)] + ([0] if key_bits % DIGIT_BITS else [])
    for shift in shifts:
        thresholds = value.unsqueeze(-1) + (digits << shift)
        at_or_above = torch.where(keys.unsqueeze(-1) >= thresholds.unsqueeze(-2), token_masses.unsqueeze(-1),
                                  0).sum(dim=-2)  # (rows, thresholds): compiled, never materialised
        value = value + ((at_or_above >= limits.unsqueeze(-1)).sum(dim=-1).to(keys.dtype) << shift)
    above = torch.where(keys > value.unsqueeze(-1), token_masses, 0).sum(dim=-1)
    tied = keys == value.unsqueeze(-1)
    each = torch.where(tied, token_masses, 0).amax(dim=-1).clamp(min=1)  # every tied token's mass
    rank = (limits - above + each - 1) // each  # 1-based among the tied tokens, in id order
    token = (tied.cumsum(dim=-1) >= rank.unsqueeze(-1)).to(torch.uint8).argmax(dim=-1)
    return token, value, above + rank * each


def search_step(logits, temperatures, nuclei, uniform) -> Step:
    """sampling.sample_step's result, found by two threshold searches per row: where the nucleus
    ends, then where u falls."""
    logits, probs, nuclei, uniforms = prepared(logits, temperatures, nuclei, uniform)
    keys = probs.view(KEY_DTYPES[probs.dtype])
    key_bits = KEY_BITS[probs.dtype]
    token_masses = masses(probs)
    totals = token_masses.sum(dim=-1)
    limits = nucleus_limits(nuclei)
    keep_all = (nuclei >= 1) | (limits > totals)
    last, last_key, kept_totals = reaching(keys, token_masses, limits.clamp(min=1).minimum(totals), key_bits)
    ids = torch.arange(probs.shape[-1], device=probs.device)
    kept_in_vocab = (keep_all.unsqueeze(-1) | (keys > last_key.unsqueeze(-1))
                     | ((keys == last_key.unsqueeze(-1)) & (ids <= last.unsqueeze(-1))))
    kept_totals = torch.where(keep_all, totals, kept_totals)
    tokens, _, _ = reaching(keys, token_masses, pick_limits(uniforms, kept_totals) + 1, key_bits)
    return step_of(logits, probs, tokens, kept_in_vocab)
