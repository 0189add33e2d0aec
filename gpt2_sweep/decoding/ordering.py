"""Faster ways to the rule's order for the eager loop; each gives exactly the tokens of
sampling.sample_step.

- sort_descending: on the CPU, one flat sort of packed integer keys instead of a sort per row.
- candidate_step: the top candidates of each row decide its pick where they hold the whole kept set
  (or the whole mass u reaches); only the other rows sort the whole vocabulary.
"""
import math

import torch

from .sampling import (
    RowSettings,
    Step,
    descending,
    kept_in_order,
    masses,
    nucleus_limits,
    pick_limits,
    prepared,
    sorted_pick,
    step_of,
)

CANDIDATES = 1024

# Probabilities in [0, 1] order like the bit patterns of their float32 values, which fit in 30 bits.
ONE_AS_BITS = 0x3F800000


def sort_descending(probs: torch.Tensor):
    """descending(probs); on the CPU, float32 probabilities are sorted as one flat int64 key per
    entry (the row, then 1.0's bits minus the probability's) in one stable sort: the order of a
    stable sort of each row, at about half the cost."""
    *leading, vocab = probs.shape
    rows = math.prod(leading)
    packable = probs.device.type == "cpu" and probs.dtype == torch.float32 and 0 < probs.numel() and rows < 2**33
    if packable:
        bits = probs.reshape(rows, vocab).view(torch.int32)
        low, high = torch.aminmax(bits)
        packable = bool(low >= 0) and bool(high <= ONE_AS_BITS)  # not -0.0, NaN or above 1
    if not packable:
        return descending(probs)
    row = torch.arange(rows).unsqueeze(-1)
    keys = ONE_AS_BITS - bits.long()
    keys |= row << 30
    _, flat_positions = torch.sort(keys.view(-1), stable=True)
    ids = (flat_positions.view(rows, vocab) - row * vocab).view(*leading, vocab)
    return probs.gather(-1, ids), ids


def top_candidates(probs: torch.Tensor, size: int):
    """The `size` largest probabilities of each row, sorted descending with ties broken by the lower
    token id: (values, token_ids, exact). The first `exact` positions are those a sort of the whole
    row gives: every token above the smallest included value is included."""
    values, ids = torch.topk(probs, size, dim=-1)
    by_id = ids.argsort(dim=-1)  # topk leaves equal values in any order: restore lower id first
    values, ids = values.gather(-1, by_id), ids.gather(-1, by_id)
    values, order = torch.sort(values, dim=-1, descending=True, stable=True)
    return values, ids.gather(-1, order), (values > values[..., -1:]).sum(dim=-1)


def keeps_all(settings: RowSettings) -> torch.Tensor:
    """Rows no filter cuts: nucleus >= 1, top_k off, min_p 0."""
    keep_all = settings.nuclei >= 1
    if settings.top_ks is not None:
        keep_all &= settings.top_ks <= 0
    if settings.min_ps is not None:
        keep_all &= settings.min_ps <= 0
    return keep_all


def candidate_pick(probs, settings: RowSettings, uniforms, size):
    """sorted_pick's tokens and kept set from the top `size` candidates, and per row whether the
    candidates decided it (else its results are not to be used)."""
    values, ids, exact = top_candidates(probs, size)
    candidate_masses = masses(values)
    keep_all = keeps_all(settings)
    # The kept set is known exactly where one filter's leading set ends within the exact prefix.
    through_exact = candidate_masses.cumsum(dim=-1).gather(-1, (exact - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1)
    complete = keep_all | ((exact > 0) & (through_exact >= nucleus_limits(settings.nuclei)))
    if settings.top_ks is not None:
        complete |= (settings.top_ks > 0) & (settings.top_ks <= exact)
    if settings.min_ps is not None:
        complete |= values[..., -1] < settings.min_ps.to(values.dtype) * values[..., 0]
    keep = kept_in_order(values, settings, candidate_masses) | keep_all.unsqueeze(-1)
    kept = candidate_masses * keep
    # Rows that keep every token need the whole vocabulary's mass (this eager path may ask the host).
    totals = kept.sum(dim=-1)
    if bool(keep_all.any()):
        totals = torch.where(keep_all, masses(probs).sum(dim=-1), totals)
    exceeds = kept.cumsum(dim=-1) > pick_limits(uniforms, totals).unsqueeze(-1)
    position = exceeds.to(torch.uint8).argmax(dim=-1)
    decided = complete & exceeds.any(dim=-1) & (position < exact)
    kept_in_vocab = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, ids, keep) | keep_all.unsqueeze(-1)
    return ids.gather(-1, position.unsqueeze(-1)).squeeze(-1), kept_in_vocab, decided


def candidate_step(logits, settings: RowSettings, uniform, candidates: int | None = CANDIDATES) -> Step:
    """sampling.sample_step's result, sorting the whole vocabulary only for the rows whose top
    `candidates` do not decide (every row with candidates=None)."""
    logits, probs, uniforms = prepared(logits, settings, uniform)
    rows = torch.arange(len(probs), device=probs.device)
    tokens = torch.empty(len(probs), dtype=torch.long, device=probs.device)
    kept_in_vocab = torch.empty_like(probs, dtype=torch.bool)
    decided = torch.zeros(len(probs), dtype=torch.bool, device=probs.device)
    if candidates is not None and candidates < probs.shape[-1]:
        # The candidates hold at most `candidates` times the largest probability. Where that is less
        # than the row's nucleus reaches (or, when every token is kept, its uniform) they cannot
        # decide, and the row goes straight to the whole sort (a top_k within them always decides).
        nuclei = settings.nuclei.to(probs.dtype)
        reach = torch.where(nuclei >= 1, uniforms.to(probs.dtype), nuclei)
        hopeful = probs.amax(dim=-1) * candidates > reach
        if settings.top_ks is not None:
            hopeful |= (settings.top_ks > 0) & (settings.top_ks <= candidates)
        hopeful = rows[hopeful]
        if len(hopeful):
            picked, kept, ok = candidate_pick(probs[hopeful], settings.rows(hopeful), uniforms[hopeful], candidates)
            tokens[hopeful], kept_in_vocab[hopeful], decided[hopeful] = picked, kept, ok
    rest = rows[~decided]
    if len(rest):
        some = probs[rest]
        tokens[rest], kept_in_vocab[rest] = sorted_pick(some, settings.rows(rest), uniforms[rest],
                                                        sort_descending(some))
    return step_of(logits, probs, tokens, kept_in_vocab)
