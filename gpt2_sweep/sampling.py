"""The sampling rule: temperature, then nucleus, then inverse CDF at a shared uniform.

Every sample of a run reads the same uniform at the same position, so two samples differ only
because their temperature or nucleus differ.
"""
from dataclasses import dataclass

import torch


def shared_uniforms(seed: int, count: int) -> torch.Tensor:
    """The run's one vector of uniforms in [0, 1), drawn on the CPU so that every device agrees."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.rand(count, generator=generator, dtype=torch.float32)


def sampling_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sampling arithmetic runs in float32 at least (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


def sorted_probabilities(logits: torch.Tensor, temperatures: torch.Tensor):
    """softmax(logits / T) per row, sorted descending with ties broken by the lower token id.

    A row with T = 0 is greedy: all its mass goes to the argmax (the lowest id among equal maxima).
    Returns (probabilities, token_ids), both of shape (batch, vocab).
    """
    logits = logits.to(sampling_dtype(logits.dtype))
    temperatures = temperatures.to(logits.dtype).unsqueeze(-1)
    greedy = temperatures == 0
    probabilities = torch.softmax(logits / torch.where(greedy, 1.0, temperatures), dim=-1)
    if greedy.any():
        one_hot = torch.zeros_like(probabilities).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
        probabilities = torch.where(greedy, one_hot, probabilities)
    return torch.sort(probabilities, dim=-1, descending=True, stable=True)


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


def filtered_sorted_distribution(logits, temperatures, nuclei):
    """The distribution actually sampled from, in descending order: (probabilities, token_ids)."""
    sorted_probs, sorted_ids = sorted_probabilities(logits, temperatures)
    kept = sorted_probs * nucleus_mask(sorted_probs, nuclei)
    return kept / kept.sum(dim=-1, keepdim=True), sorted_ids


def inverse_cdf_pick(sorted_probs: torch.Tensor, uniform) -> torch.Tensor:
    """Position of the first entry whose cumulative mass exceeds the uniform.

    If rounding leaves the total at or below the uniform, the last kept entry is taken (the last
    one with mass: a token of probability zero is never picked).
    """
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    exceeds = cumulative > uniform
    last_kept = (sorted_probs > 0).sum(dim=-1) - 1
    first = exceeds.to(torch.uint8).argmax(dim=-1)
    return torch.where(exceeds.any(dim=-1), first, last_kept)


@dataclass
class Step:
    """One decode step for a batch: the picked tokens and what the metrics need of the step."""

    tokens: torch.Tensor         # the picked token ids
    logprobs: torch.Tensor       # log p(token) under the model itself: T = 1, no nucleus
    entropies: torch.Tensor      # entropy (nats) of the distribution actually sampled from
    support_sizes: torch.Tensor  # how many tokens that distribution gives non-zero mass


def sample_step(logits, temperatures, nuclei, uniform) -> Step:
    """Pick one token per row of logits (batch, vocab), all rows reading the same uniform."""
    logits = logits.to(sampling_dtype(logits.dtype))
    sorted_probs, sorted_ids = filtered_sorted_distribution(logits, temperatures, nuclei)
    position = inverse_cdf_pick(sorted_probs, uniform)
    tokens = sorted_ids.gather(-1, position.unsqueeze(-1)).squeeze(-1)
    return Step(
        tokens=tokens,
        logprobs=logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1),
        entropies=-torch.special.xlogy(sorted_probs, sorted_probs).sum(dim=-1),
        support_sizes=(sorted_probs > 0).sum(dim=-1),
    )


def select_tokens(logits, temperatures, nuclei, uniform) -> torch.Tensor:
    """One token id per row of logits (batch, vocab), all rows reading the same uniform."""
    return sample_step(logits, temperatures, nuclei, uniform).tokens
