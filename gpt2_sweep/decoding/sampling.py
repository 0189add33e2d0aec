"""The sampling rule: temperature, then the filters (nucleus, top_k, min_p), then inverse CDF at a
shared uniform.

Every sample of a run reads the same uniform at the same position, so two samples differ only
because their settings (temperature, nucleus, top_k, min_p) differ. Masses are counted in whole units of 2**-28 of a
probability, so every cumulative sum the rule compares is an exact integer: a full sort, the top
candidates (ordering.py) and a threshold search (threshold_search.py) pick the same tokens on any
device, whatever the order in which they add.
"""
import hashlib
from dataclasses import dataclass, fields, replace

import torch

from .scans import row_cumsum

MASS_UNIT = 2**28  # u (24 bits) times a total (below 2**29) is exact in float64


def shared_uniforms(seed: int, count: int) -> torch.Tensor:
    """The run's one vector of uniforms in [0, 1), drawn on the CPU so that every device agrees."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.rand(count, generator=generator, dtype=torch.float32)


def derived_seed(seed: int, prompt_index: int, draw: int) -> int:
    """The seed of (prompt_index, draw)'s vector: the first 8 bytes, big-endian, of the SHA-256 of
    "gpt2_sweep uniforms {seed} {prompt_index} {draw}"; (0, 0) keeps the run's seed."""
    if (prompt_index, draw) == (0, 0):
        return seed
    digest = hashlib.sha256(f"gpt2_sweep uniforms {seed} {prompt_index} {draw}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def sample_uniforms(seed: int, prompt_index: int, draw: int, count: int) -> torch.Tensor:
    """The vector the samples of one (prompt, draw) share: shared_uniforms(derived_seed(...), count),
    where prompt_index is the prompt's index in its whole set and count = prompt tokens + new tokens - 1
    (the token at position t, the prompt counted, reads u[t - 1]). Prompt 0's draw 0 is the run's one
    vector of a one-prompt run; every other pair gets a stream of its own."""
    return shared_uniforms(derived_seed(seed, prompt_index, draw), count)


def sampling_dtype(dtype: torch.dtype) -> torch.dtype:
    """Sampling arithmetic runs in float32 at least (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


def probabilities(logits: torch.Tensor, temperatures: torch.Tensor) -> torch.Tensor:
    """softmax(logits / T) per row, in vocabulary order; a row with T = 0 is greedy: all its mass
    goes to the argmax (the lowest id among equal maxima)."""
    temperatures = temperatures.to(logits.dtype).unsqueeze(-1)
    greedy = temperatures == 0
    # Shifted to a maximum of 0 before dividing, so that a tiny T gives -inf, not inf - inf = nan.
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    probs = torch.softmax(shifted / torch.where(greedy, 1.0, temperatures), dim=-1)
    # Compiled steps may not ask the host whether a row is greedy; eager ones skip the work when none is.
    if torch.compiler.is_compiling() or bool(greedy.any()):
        one_hot = torch.zeros_like(probs).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
        probs = torch.where(greedy, one_hot, probs)
    return probs


def masses(probs: torch.Tensor) -> torch.Tensor:
    """Each probability in whole units of 1 / MASS_UNIT (int64); a token of mass 0 is never picked."""
    return torch.round(probs * MASS_UNIT).to(torch.int64)


def nucleus_limits(nuclei: torch.Tensor) -> torch.Tensor:
    """Per row, the mass below which the mass before a token must stay for the token to be kept."""
    return torch.ceil(nuclei.to(torch.float64) * MASS_UNIT).to(torch.int64)


def pick_limits(uniforms: torch.Tensor, kept_totals: torch.Tensor) -> torch.Tensor:
    """Per row, floor(u * kept mass): the pick is the first token whose cumulative mass exceeds it.
    u is read as float32, so the product is exact in float64."""
    product = uniforms.to(torch.float32).to(torch.float64) * kept_totals.to(torch.float64)
    return torch.floor(product).to(torch.int64)


def nucleus_mask(sorted_masses: torch.Tensor, nuclei: torch.Tensor) -> torch.Tensor:
    """Keep the smallest leading set whose mass reaches the nucleus value (Holtzman et al.).

    A token is kept while the mass strictly before it is below the nucleus value; the top token is
    always kept and a nucleus of 1 or more keeps every token.
    """
    before = row_cumsum(sorted_masses) - sorted_masses
    keep = (before < nucleus_limits(nuclei).unsqueeze(-1)) | (nuclei >= 1).unsqueeze(-1)
    keep[..., 0] = True
    return keep


def inverse_cdf_pick(kept_masses: torch.Tensor, uniforms) -> torch.Tensor:
    """Position of the first entry whose cumulative mass exceeds u times the total (the renormalised
    CDF above u). It always exists and always has mass."""
    cumulative = row_cumsum(kept_masses)
    uniforms = torch.as_tensor(uniforms, device=kept_masses.device).expand(cumulative.shape[:-1])
    exceeds = cumulative > pick_limits(uniforms, cumulative[..., -1]).unsqueeze(-1)
    return exceeds.to(torch.uint8).argmax(dim=-1)


@dataclass
class RowSettings:
    """Each row's decoding settings, one tensor per axis; None where the axis is off for every row.
    temperature 0 is greedy; nucleus >= 1, top_k 0 and min_p 0 keep every token."""

    temperatures: torch.Tensor
    nuclei: torch.Tensor
    top_ks: torch.Tensor | None = None
    min_ps: torch.Tensor | None = None

    @classmethod
    def of(cls, settings) -> "RowSettings":
        """From a sequence of per-sample settings objects (schedules.Setting); a filter that every
        row leaves neutral is left out (None), so that the compiled step does no work for it."""
        def column(name, dtype, neutral=None):
            values = [getattr(setting, name, neutral) for setting in settings]
            return None if all(v == neutral for v in values) else torch.tensor(values, dtype=dtype)
        return cls(column("temperature", torch.float32), column("nucleus", torch.float32),
                   column("top_k", torch.long, 0), column("min_p", torch.float32, 0.0))

    def present(self):
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def __len__(self) -> int:
        return len(self.temperatures)

    def rows(self, index) -> "RowSettings":
        return replace(self, **{name: values[index] for name, values in self.present().items()})

    def padded(self, count: int) -> "RowSettings":
        """The last row repeated until there are `count` rows."""
        return replace(self, **{name: torch.cat([values, values[-1:].expand(count - len(values))])
                                for name, values in self.present().items()})

    def to(self, device) -> "RowSettings":
        return replace(self, **{name: values.to(device) for name, values in self.present().items()})


def kept_in_order(values: torch.Tensor, settings: RowSettings, value_masses=None) -> torch.Tensor:
    """Which positions of the descending `values` every filter keeps: the nucleus, the first top_k
    positions, the values at least min_p times the top one. Each keeps a leading set, the top token
    always, so together they keep the shortest of those sets. value_masses: masses(values), if at hand."""
    keep = nucleus_mask(masses(values) if value_masses is None else value_masses, settings.nuclei.to(values.dtype))
    if settings.top_ks is not None:
        top_ks = settings.top_ks.unsqueeze(-1)
        keep &= (top_ks <= 0) | (torch.arange(values.shape[-1], device=values.device) < top_ks)
    if settings.min_ps is not None:
        keep &= values >= settings.min_ps.to(values.dtype).unsqueeze(-1) * values[..., :1]
    keep[..., 0] = True
    return keep


def descending(probs: torch.Tensor):
    """Each row sorted descending, ties broken by the lower token id: (values, token_ids)."""
    return torch.sort(probs, dim=-1, descending=True, stable=True)


def sorted_pick(probs, settings, uniforms, order):
    """The rule over `order`, the rows' whole descending order (values, ids): the picked token ids
    and which tokens the filters keep, in vocabulary order."""
    values, ids = order
    value_masses = masses(values)
    keep = kept_in_order(values, settings, value_masses)
    position = inverse_cdf_pick(value_masses * keep, uniforms)
    kept_in_vocab = torch.zeros_like(keep).scatter_(-1, ids, keep)
    return ids.gather(-1, position.unsqueeze(-1)).squeeze(-1), kept_in_vocab


@dataclass
class Step:
    """One decode step for a batch: the picked tokens and what the metrics need of the step."""

    tokens: torch.Tensor         # the picked token ids
    logprobs: torch.Tensor       # log p(token) under the model itself: T = 1, no nucleus
    entropies: torch.Tensor      # entropy (nats) of the distribution actually sampled from
    support_sizes: torch.Tensor  # how many tokens the rule can pick: kept, and of mass >= 1 unit


def prepared(logits, settings: RowSettings, uniform):
    """Logits in the sampling dtype, their probabilities at T, and one uniform per row."""
    logits = logits.to(sampling_dtype(logits.dtype))
    uniforms = torch.as_tensor(uniform, dtype=torch.float32, device=logits.device).reshape(-1)
    return logits, probabilities(logits, settings.temperatures), uniforms.expand(len(logits))


def pickable(probs: torch.Tensor) -> torch.Tensor:
    """Tokens whose mass is at least one unit: masses(probs) > 0, i.e. p * MASS_UNIT above one half
    (round half to even sends 0.5 to 0; the scaling by a power of two is exact)."""
    return probs * MASS_UNIT > 0.5


def step_of(logits, probs, tokens, kept_in_vocab) -> Step:
    """The step's statistics from the picked tokens and the kept set, in vocabulary order. The
    support size counts the tokens the rule can pick: kept, and of mass >= 1 unit (a float
    probability of 1e-30 is not 0, but such a token is never picked)."""
    kept_probs = probs * kept_in_vocab
    distribution = kept_probs / kept_probs.sum(dim=-1, keepdim=True)
    return Step(
        tokens=tokens,
        logprobs=logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1),
        entropies=0.0 - torch.xlogy(distribution, distribution).sum(dim=-1),  # 0.0 -: no -0.0 when greedy
        support_sizes=(kept_in_vocab & pickable(probs)).sum(dim=-1),
    )


def sample_step(logits, settings: RowSettings, uniform) -> Step:
    """Pick one token per row of logits (batch, vocab), all rows reading the same uniform (or one
    uniform per row), by sorting every row in full: the rule stated plainly."""
    logits, probs, uniforms = prepared(logits, settings, uniform)
    tokens, kept_in_vocab = sorted_pick(probs, settings, uniforms, descending(probs))
    return step_of(logits, probs, tokens, kept_in_vocab)


def filtered_sorted_distribution(logits, settings: RowSettings):
    """The distribution actually sampled from, in descending order: (probabilities, token_ids)."""
    logits, probs, _ = prepared(logits, settings, 0.0)
    values, ids = descending(probs)
    kept = values * kept_in_order(values, settings)
    return kept / kept.sum(dim=-1, keepdim=True), ids


def sorted_probabilities(logits: torch.Tensor, temperatures: torch.Tensor):
    """softmax(logits / T) of every token, sorted descending, ties by the lower token id."""
    return descending(probabilities(logits.to(sampling_dtype(logits.dtype)), temperatures))


def select_tokens(logits, settings: RowSettings, uniform):
    """One token id per row of logits (batch, vocab), all rows reading the same uniform."""
    return sample_step(logits, settings, uniform).tokens
