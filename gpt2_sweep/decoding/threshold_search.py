"""The rule's picks without sorting: fixed shapes and no host synchronisation, for a captured or
compiled decode step. Eager, it gives exactly the tokens and statistics of sampling.sample_step.
Compiled (inductor), its softmax may round a probability differently in the last bit, and so a
whole-number mass by one unit: tokens and support sizes then differ from the eager rule's only where
u or the nucleus value lies within that rounding of a boundary, log-probabilities and entropies by
float32 rounding (tests/test_static_decode.py, slow).

Probabilities order like the bit patterns of their floats (all are >= 0). Per row, the value at
which the cumulative mass in descending order first reaches a limit is found digit by digit over
those bit patterns (a radix select): each pass adds every candidate token's mass into the bin of its
next DIGIT_BITS bits, one scatter-add over the row, and keeps the bin where the limit is reached. The
tokens of that value are then ranked by id, as the rule breaks ties. Keys and masses are computed
once a step, masses in int32 (every total stays below 2**29 + vocabulary / 2, far below 2**31).
"""
import torch

from .sampling import MASS_UNIT, RowSettings, Step, nucleus_limits, pick_limits, prepared, step_of
from .scans import row_cumsum

DIGIT_BITS = 8
KEY_BITS = {torch.float32: 30, torch.float64: 62}  # the bit patterns of values in [0, 1] fit in these
KEY_DTYPES = {torch.float32: torch.int32, torch.float64: torch.int64}


def digit_passes(key_bits: int, digit_bits: int) -> list[tuple[int, int]]:
    """(shift, width) of each pass, from the top bits down; the last pass may be narrower."""
    return [(max(top - digit_bits, 0), min(digit_bits, top)) for top in range(key_bits, 0, -digit_bits)]


def tied_pick(keys, token_masses, limits, value, above):
    """Among the tokens whose key is `value` (all of one mass), the one at which the cumulative mass,
    `above` (the mass of higher keys) included, first reaches `limits`: ties ranked by id."""
    tied = keys == value.unsqueeze(-1)
    each = torch.where(tied, token_masses, 0).amax(dim=-1).clamp(min=1)
    rank = (limits - above + each - 1) // each  # 1-based among the tied tokens, in id order
    return (row_cumsum(tied, torch.int32) >= rank.unsqueeze(-1)).to(torch.uint8).argmax(dim=-1)


def reaching(keys, token_masses, limits, key_bits: int):
    """Per row, the token at which the cumulative mass in descending order first reaches `limits`
    (each between 1 and the row's total mass): (token id, its key). token_masses and limits: int32;
    token_masses None: every token counts 1."""
    rows = len(keys)
    if token_masses is None:
        token_masses = torch.ones_like(keys, dtype=torch.int32)
    value = torch.zeros(rows, dtype=keys.dtype, device=keys.device)
    above = torch.zeros(rows, dtype=torch.int32, device=keys.device)  # mass of keys beyond the prefix
    for shift, width in digit_passes(key_bits, DIGIT_BITS):
        bins = 2**width
        prefix = shift + width
        candidate = (keys >> prefix) == (value >> prefix).unsqueeze(-1)
        digit = torch.where(candidate, (keys >> shift) & (bins - 1), bins)  # bin `bins`: not a candidate
        histogram = torch.zeros(rows, bins + 1, dtype=torch.int32, device=keys.device)
        histogram.scatter_add_(-1, digit.long(), token_masses)
        # Mass at or above each digit, the higher prefixes included: it falls as the digit grows.
        at_or_above = row_cumsum(histogram[:, :bins].flip(-1), torch.int32).flip(-1) + above.unsqueeze(-1)
        chosen = (at_or_above >= limits.unsqueeze(-1)).sum(dim=-1, dtype=torch.int32) - 1
        above = at_or_above.gather(-1, chosen.long().unsqueeze(-1)).squeeze(-1) - histogram.gather(
            -1, chosen.long().unsqueeze(-1)).squeeze(-1)
        value = value + (chosen.to(keys.dtype) << shift)
    return tied_pick(keys, token_masses, limits, value, above), value


def leading(keys, ids, last, last_key):
    """The tokens ranked at or before (last, last_key) in descending order, ties by id."""
    last, last_key = last.unsqueeze(-1), last_key.unsqueeze(-1)
    return (keys > last_key) | ((keys == last_key) & (ids <= last))


def selection_step(logits, settings: RowSettings, uniform, find) -> Step:
    """sampling.sample_step's result from selections per row, `find(keys, masses, limits, key_bits)`
    giving (token, key) as `reaching` does (masses: round(p * MASS_UNIT) of the keys' probabilities,
    or None where every token counts 1): where the nucleus ends, where the top_k-th token is
    (top_k on), then where u falls among the kept tokens."""
    logits, probs, uniforms = prepared(logits, settings, uniform)
    keys = probs.view(KEY_DTYPES[probs.dtype])
    key_bits = KEY_BITS[probs.dtype]
    ids = torch.arange(probs.shape[-1], device=probs.device)
    token_masses = torch.round(probs * MASS_UNIT).to(torch.int32)  # sampling.masses, in int32
    totals = token_masses.sum(dim=-1, dtype=torch.int32)
    limits = nucleus_limits(settings.nuclei)
    keep_all = (settings.nuclei >= 1) | (limits > totals)
    last, last_key = find(keys, token_masses, limits.clamp(min=1).minimum(totals).to(torch.int32), key_bits)
    kept = keep_all.unsqueeze(-1) | leading(keys, ids, last, last_key)
    if settings.top_ks is not None:
        top_ks = settings.top_ks.clamp(min=0, max=probs.shape[-1]).to(torch.int32)
        kth, kth_key = find(keys, None, top_ks.clamp(min=1), key_bits)
        kept &= (top_ks == 0).unsqueeze(-1) | leading(keys, ids, kth, kth_key)
    if settings.min_ps is not None:
        kept &= probs >= settings.min_ps.to(probs.dtype).unsqueeze(-1) * probs.amax(dim=-1, keepdim=True)
    kept_totals = torch.where(kept, token_masses, 0).sum(dim=-1, dtype=torch.int32)
    # The kept tokens lead the descending order, so the pick is where the cumulative mass of all
    # tokens first exceeds u times theirs.
    tokens, _ = find(keys, token_masses, (pick_limits(uniforms, kept_totals) + 1).to(torch.int32), key_bits)
    return step_of(logits, probs, tokens, kept)


def search_step(logits, settings: RowSettings, uniform) -> Step:
    """sampling.sample_step's result, found by radix selects in torch (scatter-adds, no sort)."""
    return selection_step(logits, settings, uniform, reaching)
