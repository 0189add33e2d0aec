"""The sampling rule: temperature, then nucleus, then inverse CDF at a shared uniform.

Every sample of a run reads the same uniform at the same position, so two samples differ only
because their temperature or nucleus differ.
"""
import math
from dataclasses import dataclass

import torch


def shared_uniforms(seed: int, count: int) -> torch.Tensor:
    """The run's one vector of uniforms in [0, 1), drawn on the CPU so that every device agrees."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.rand(count, generator=generator, dtype=torch.float32)


def sampling_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sampling arithmetic runs in float32 at least (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


# The rule needs the distribution in descending order only as far as the nucleus and the uniform
# reach. The largest CANDIDATES probabilities (torch.topk) usually cover that, at a fraction of the
# cost of sorting the vocabulary; rows they do not cover are sorted in full. Both give the same tokens.
CANDIDATES = 1024


def probabilities(logits: torch.Tensor, temperatures: torch.Tensor) -> torch.Tensor:
    """softmax(logits / T) per row, in vocabulary order; a row with T = 0 is greedy: all its mass
    goes to the argmax (the lowest id among equal maxima)."""
    temperatures = temperatures.to(logits.dtype).unsqueeze(-1)
    greedy = temperatures == 0
    # Shifted to a maximum of 0 before dividing, so that a tiny T gives -inf, not inf - inf = nan.
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    probs = torch.softmax(shifted / torch.where(greedy, 1.0, temperatures), dim=-1)
    if greedy.any():
        one_hot = torch.zeros_like(probs).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
        probs = torch.where(greedy, one_hot, probs)
    return probs


# Probabilities in [0, 1] order like the bit patterns of their float32 values, which fit in 30 bits.
ONE_AS_BITS = 0x3F800000


def sort_descending(probs: torch.Tensor):
    """Each row sorted descending, ties broken by the lower token id: (values, token_ids).

    On the CPU, float32 probabilities are sorted as one flat int64 key per entry (the row, then 1.0's
    bits minus the probability's) in one stable sort: the order of a stable sort of each row, at
    about half the cost.
    """
    *leading, vocab = probs.shape
    rows = math.prod(leading)
    packable = probs.device.type == "cpu" and probs.dtype == torch.float32 and 0 < probs.numel() and rows < 2**33
    if packable:
        bits = probs.reshape(rows, vocab).view(torch.int32)
        low, high = torch.aminmax(bits)
        packable = bool(low >= 0) and bool(high <= ONE_AS_BITS)  # not -0.0, NaN or above 1
    if not packable:
        return torch.sort(probs, dim=-1, descending=True, stable=True)
    row = torch.arange(rows).unsqueeze(-1)
    keys = ONE_AS_BITS - bits.long()
    keys |= row << 30
    _, flat_positions = torch.sort(keys.view(-1), stable=True)
    ids = (flat_positions.view(rows, vocab) - row * vocab).view(*leading, vocab)
    return probs.gather(-1, ids), ids


def descending_order(probs: torch.Tensor, size: int | None = None):
    """The `size` largest probabilities of each row (all without size), sorted descending with ties
    broken by the lower token id: (values, token_ids, exact). The first `exact` positions are those
    a sort of the whole row gives: every token above the smallest included value is included."""
    vocab = probs.shape[-1]
    if size is None or size >= vocab:
        values, ids = sort_descending(probs)
        return values, ids, torch.full(probs.shape[:-1], vocab, device=probs.device)
    values, ids = torch.topk(probs, size, dim=-1)
    by_id = ids.argsort(dim=-1)  # topk leaves equal values in any order: restore lower id first
    values, ids = values.gather(-1, by_id), ids.gather(-1, by_id)
    values, order = torch.sort(values, dim=-1, descending=True, stable=True)
    return values, ids.gather(-1, order), (values > values[..., -1:]).sum(dim=-1)


def sorted_probabilities(logits: torch.Tensor, temperatures: torch.Tensor):
    """softmax(logits / T) of every token, sorted descending, ties by the lower token id."""
    values, ids, _ = descending_order(probabilities(logits.to(sampling_dtype(logits.dtype)), temperatures))
    return values, ids


def nucleus_mask(sorted_probs: torch.Tensor, nuclei: torch.Tensor) -> torch.Tensor:
    """Keep the smallest leading set whose mass reaches the nucleus value (Holtzman et al.).

    A token is kept while the mass strictly before it is below the nucleus value; the top token is
    always kept and a nucleus of 1 or more keeps every token.
    """
    nuclei = nuclei.to(sorted_probs.dtype).unsqueeze(-1)
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    keep = torch.ones_like(sorted_probs, dtype=torch.bool)
    keep[..., 1:] = (cumulative[..., :-1] < nuclei) | (nuclei >= 1)
    return keep


def inverse_cdf_pick(sorted_probs: torch.Tensor, uniform) -> torch.Tensor:
    """Position of the first entry whose cumulative mass exceeds the uniform.

    If rounding leaves the total at or below the uniform, the last kept entry is taken (the last
    one with mass: a token of probability zero is never picked).
    """
    exceeds = torch.cumsum(sorted_probs, dim=-1) > uniform
    last_kept = (sorted_probs > 0).sum(dim=-1) - 1
    return torch.where(exceeds.any(dim=-1), exceeds.to(torch.uint8).argmax(dim=-1), last_kept)


def filtered(probs, nuclei, order):
    """Nucleus filtering and renormalisation over `order`, the rows' descending_order.

    Returns the kept distribution in descending order and its token ids, the same distribution in
    vocabulary order, and per row whether the order held the whole kept set. The normaliser is the
    kept mass summed in vocabulary order, which needs no sort.
    """
    values, ids, exact = order
    keep = nucleus_mask(values, nuclei)
    keep_all = (nuclei >= 1).unsqueeze(-1)
    kept_in_vocab = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, ids, keep) | keep_all
    kept_probs = probs * kept_in_vocab
    total = kept_probs.sum(dim=-1, keepdim=True)
    complete = keep_all.squeeze(-1) | (keep.sum(dim=-1) <= exact)
    return values * keep / total, ids, kept_probs / total, complete, exact


def filtered_sorted_distribution(logits, temperatures, nuclei):
    """The distribution actually sampled from, in descending order: (probabilities, token_ids)."""
    probs = probabilities(logits.to(sampling_dtype(logits.dtype)), temperatures)
    sorted_kept, ids, _, _, _ = filtered(probs, nuclei, descending_order(probs))
    return sorted_kept, ids


def pick(probs, nuclei, uniforms, order):
    """Token ids picked by the rule over `order` (descending_order of probs, whole or candidates),
    the sampled distribution in vocabulary order, and per row whether the order sufficed to decide
    (always, when it holds the whole vocabulary)."""
    sorted_kept, ids, distribution, complete, exact = filtered(probs, nuclei, order)
    if sorted_kept.shape[-1] == probs.shape[-1]:
        position = inverse_cdf_pick(sorted_kept, uniforms)
        decided = torch.ones_like(complete)
    else:
        exceeds = torch.cumsum(sorted_kept, dim=-1) > uniforms
        position = exceeds.to(torch.uint8).argmax(dim=-1)
        decided = complete & exceeds.any(dim=-1) & (position < exact)
    return ids.gather(-1, position.unsqueeze(-1)).squeeze(-1), distribution, decided


def pick_from_candidates(probs, nuclei, uniforms, size):
    """pick's tokens and distribution for every row, sorting the whole vocabulary only for the rows
    whose `size` largest probabilities do not decide."""
    # The candidates hold at most `size` times the largest probability. Where that is less than the
    # row's nucleus reaches (or, when every token is kept, its uniform) they cannot decide, and the
    # row goes straight to the whole sort.
    reach = torch.where(nuclei >= 1, uniforms.squeeze(-1), nuclei)
    hopeful = probs.amax(dim=-1) * size > reach
    if bool(hopeful.all()):
        tokens, distribution, decided = pick(probs, nuclei, uniforms, descending_order(probs, size))
    else:
        tokens = torch.empty(len(probs), dtype=torch.long, device=probs.device)
        distribution = torch.empty_like(probs)
        decided = hopeful.clone()
        rows = hopeful.nonzero().squeeze(-1)
        if len(rows):
            some = probs[rows]
            tokens[rows], distribution[rows], decided[rows] = pick(
                some, nuclei[rows], uniforms[rows], descending_order(some, size))
    if not bool(decided.all()):
        rows = (~decided).nonzero().squeeze(-1)
        rest = probs[rows]
        tokens[rows], distribution[rows], _ = pick(rest, nuclei[rows], uniforms[rows], descending_order(rest))
    return tokens, distribution


@dataclass
class Step:
    """One decode step for a batch: the picked tokens and what the metrics need of the step."""

    tokens: torch.Tensor         # the picked token ids
    logprobs: torch.Tensor       # log p(token) under the model itself: T = 1, no nucleus
    entropies: torch.Tensor      # entropy (nats) of the distribution actually sampled from
    support_sizes: torch.Tensor  # how many tokens that distribution gives non-zero mass


def sample_step(logits, temperatures, nuclei, uniform, candidates: int | None = CANDIDATES) -> Step:
    """Pick one token per row of logits (batch, vocab), all rows reading the same uniform (or one
    uniform per row). candidates=None sorts every row in full: the straightforward path."""
    logits = logits.to(sampling_dtype(logits.dtype))
    nuclei = nuclei.to(logits.dtype)
    uniforms = torch.as_tensor(uniform, dtype=logits.dtype, device=logits.device).reshape(-1, 1)
    uniforms = uniforms.expand(len(logits), 1)
    probs = probabilities(logits, temperatures)
    if candidates is None or candidates >= probs.shape[-1]:
        tokens, distribution, _ = pick(probs, nuclei, uniforms, descending_order(probs))
    else:
        tokens, distribution = pick_from_candidates(probs, nuclei, uniforms, candidates)
    return Step(
        tokens=tokens,
        logprobs=logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1),
        entropies=0.0 - torch.xlogy(distribution, distribution).sum(dim=-1),  # 0.0 -: no -0.0 when greedy
        support_sizes=(distribution > 0).sum(dim=-1),
    )


def select_tokens(logits, temperatures, nuclei, uniform, candidates: int | None = CANDIDATES):
    """One token id per row of logits (batch, vocab), all rows reading the same uniform."""
    return sample_step(logits, temperatures, nuclei, uniform, candidates).tokens
