"""The rule's picks without sorting: fixed shapes and no host synchronisation, for a captured or
compiled decode step. Eager, it gives exactly the tokens and statistics of sampling.sample_step.
Compiled (inductor), its softmax may round a probability differently in the last bit, and so a
whole-number mass by one unit: tokens and support sizes then differ from the eager rule's only where
u or the nucleus value lies within that rounding of a boundary, log-probabilities and entropies by
float32 rounding (tests/test_static_decode.py, slow).

Probabilities order like the bit patterns of their floats (all are >= 0). Per row, the value at
which the cumulative mass in descending order first reaches a limit is found digit by digit over
those bit patterns, 2**DIGIT_BITS - 1 thresholds a pass; the tokens of that value are then ranked
by id, as the rule breaks ties.
"""
import torch

from .sampling import RowSettings, Step, masses, nucleus_limits, pick_limits, prepared, step_of

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


def leading(keys, ids, last, last_key):
    """The tokens ranked at or before (last, last_key) in descending order, ties by id."""
    last, last_key = last.unsqueeze(-1), last_key.unsqueeze(-1)
    return (keys > last_key) | ((keys == last_key) & (ids <= last))


def search_step(logits, settings: RowSettings, uniform) -> Step:
    """sampling.sample_step's result, found by threshold searches per row: where the nucleus ends,
    where the top_k-th token is (top_k on), then where u falls among the kept tokens."""
    logits, probs, uniforms = prepared(logits, settings, uniform)
    keys = probs.view(KEY_DTYPES[probs.dtype])
    key_bits = KEY_BITS[probs.dtype]
    ids = torch.arange(probs.shape[-1], device=probs.device)
    token_masses = masses(probs)
    totals = token_masses.sum(dim=-1)
    limits = nucleus_limits(settings.nuclei)
    keep_all = (settings.nuclei >= 1) | (limits > totals)
    last, last_key, _ = reaching(keys, token_masses, limits.clamp(min=1).minimum(totals), key_bits)
    kept = keep_all.unsqueeze(-1) | leading(keys, ids, last, last_key)
    if settings.top_ks is not None:
        top_ks = settings.top_ks.clamp(min=0, max=probs.shape[-1])
        kth, kth_key, _ = reaching(keys, torch.ones_like(token_masses), top_ks.clamp(min=1), key_bits)
        kept &= (top_ks == 0).unsqueeze(-1) | leading(keys, ids, kth, kth_key)
    if settings.min_ps is not None:
        kept &= probs >= settings.min_ps.to(probs.dtype).unsqueeze(-1) * probs.amax(dim=-1, keepdim=True)
    kept_totals = torch.where(kept, token_masses, 0).sum(dim=-1)
    # The kept tokens lead the descending order, so the pick is where the cumulative mass of all
    # tokens first exceeds u times theirs.
    tokens, _, _ = reaching(keys, token_masses, pick_limits(uniforms, kept_totals) + 1, key_bits)
    return step_of(logits, probs, tokens, kept)
