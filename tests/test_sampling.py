"""The sampling rule, against a float64 reference, transformers' warpers and hand-made cases."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

from gpt2_sweep.decoding.ordering import candidate_step, sort_descending
from gpt2_sweep.decoding.sampling import (MASS_UNIT, RowSettings, filtered_sorted_distribution, inverse_cdf_pick, kept_in_order,
                                 masses, nucleus_mask, sample_step, select_tokens, shared_uniforms, sorted_probabilities)
from gpt2_sweep.runner.schedules import Setting
from gpt2_sweep.decoding.threshold_search import search_step
from reference import SAFE_MARGIN, reference_pick


def full_distribution(logits, settings):
    """The filtered distribution scattered back into vocabulary order."""
    sorted_probs, sorted_ids = filtered_sorted_distribution(logits, settings)
    return torch.zeros_like(sorted_probs).scatter_(-1, sorted_ids, sorted_probs)


def test_shared_uniforms_are_seeded_and_in_unit_interval():
    first = shared_uniforms(0, 49)
    assert first.shape == (49,) and first.dtype == torch.float32
    assert torch.equal(first, shared_uniforms(0, 49))
    assert torch.equal(first[:10], shared_uniforms(0, 10))  # a prefix of a longer run
    assert not torch.equal(first, shared_uniforms(1, 49))
    assert bool(((first >= 0) & (first < 1)).all())


def test_sort_is_descending_with_ties_broken_by_lower_token_id():
    logits = torch.tensor([[1.0, 3.0, 2.0, 3.0, 2.0]])
    probs, ids = sorted_probabilities(logits, torch.tensor([1.0]))
    assert ids.tolist() == [[1, 3, 2, 4, 0]]
    assert bool((probs[0, :-1] >= probs[0, 1:]).all())


@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 9), vocab=st.integers(1, 5000),
       levels=st.sampled_from([2, 50, None]))
def test_the_packed_sort_orders_like_a_stable_descending_sort(seed, rows, vocab, levels):
    generator = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(rows, vocab, generator=generator) * 4, dim=-1)
    if levels:  # many ties
        probs = (probs * levels).round() / levels
    probs[0, :1] = 1.0  # the extremes: 1 and 0 (after rounding, above)
    for shaped in (probs, probs[0], probs.reshape(1, rows, vocab)):
        values, ids = sort_descending(shaped)
        expected_values, expected_ids = torch.sort(shaped, dim=-1, descending=True, stable=True)
        assert torch.equal(ids, expected_ids) and torch.equal(values, expected_values)


def test_the_packed_sort_leaves_what_is_not_a_probability_to_torch_sort():
    for probs in (torch.tensor([[0.5, float("nan"), 0.2, 0.2]]), torch.tensor([[0.5, -0.1, 0.2, 0.2]]),
                  torch.tensor([[0.0, 0.5, -0.0, 0.0], [0.25, -0.0, 0.0, 0.75]]), torch.zeros(2, 0),
                  torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64)):
        values, ids = sort_descending(probs)
        expected_values, expected_ids = torch.sort(probs, dim=-1, descending=True, stable=True)
        assert torch.equal(ids, expected_ids) and torch.allclose(values, expected_values, equal_nan=True)


def test_nucleus_keeps_the_smallest_set_whose_mass_reaches_the_value():
    probs = torch.tensor([[0.5, 0.25, 0.125, 0.125]] * 6)  # exact in binary
    nuclei = torch.tensor([0.0, 0.5, 0.6, 0.75, 0.76, 1.0])
    kept = nucleus_mask(masses(probs), nuclei).sum(-1).tolist()
    assert kept == [1, 1, 2, 2, 3, 4]


def test_nucleus_of_one_or_more_keeps_every_token_even_with_rounding():
    rounded_up = torch.tensor([[MASS_UNIT // 2 + 1, MASS_UNIT // 2 + 1, 5]])  # rounding took the total past 1
    assert nucleus_mask(rounded_up, torch.tensor([0.9999])).tolist() == [[True, True, False]]
    assert bool(nucleus_mask(rounded_up, torch.tensor([1.0])).all())
    assert bool(nucleus_mask(rounded_up, torch.tensor([1.5])).all())


def test_inverse_cdf_picks_the_first_token_whose_cumulative_mass_exceeds_u():
    probs = torch.tensor([[0.5, 0.25, 0.25, 0.0]] * 5)
    uniforms = [0.0, 0.49, 0.5, 0.75, 0.9999]
    picks = [inverse_cdf_pick(masses(probs[i:i + 1]), u).item() for i, u in enumerate(uniforms)]
    assert picks == [0, 0, 1, 2, 2]


def test_the_largest_uniform_picks_the_last_token_with_mass_never_one_without():
    probs = torch.tensor([[0.5, 0.25, 0.2499, 0.0, 0.0]])  # renormalised by the kept total
    assert inverse_cdf_pick(masses(probs), torch.tensor(1 - 2**-24)).item() == 2


def test_temperature_zero_is_greedy_whatever_u_and_nucleus():
    logits = torch.tensor([[0.1, 2.0, 2.0, -1.0]] * 3)
    for u in (0.0, 0.5, 0.999):
        tokens = select_tokens(logits, RowSettings(torch.zeros(3), torch.tensor([0.0, 0.5, 1.0])), u)
        assert tokens.tolist() == [1, 1, 1]


def test_a_tiny_temperature_is_greedy_not_nan():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(6)) * 5
    step = sample_step(logits, RowSettings(torch.tensor([1e-40, 1e-30, 1e-6]), torch.tensor([1.0, 0.5, 1.0])), 0.9)
    assert step.tokens.tolist() == logits.argmax(-1).tolist()
    assert step.entropies.tolist() == [0.0, 0.0, 0.0]


def test_nucleus_zero_keeps_only_the_top_token():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    for u in (0.0, 0.3, 0.99):
        tokens = select_tokens(logits, RowSettings(torch.full((4,), 1.3), torch.zeros(4)), u)
        assert tokens.tolist() == logits.argmax(-1).tolist()


def test_rows_are_independent_and_share_the_uniform():
    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(1))
    temperatures, nuclei = torch.tensor([0.7, 1.0, 1.2]), torch.tensor([0.9, 1.0, 0.3])
    together = select_tokens(logits, RowSettings(temperatures, nuclei), 0.42)
    alone = [select_tokens(logits[i:i + 1], RowSettings(temperatures[i:i + 1], nuclei[i:i + 1]), 0.42).item()
             for i in range(3)]
    assert together.tolist() == alone


def test_sampling_runs_in_float32_at_least():
    logits = torch.randn(2, 30, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    probs, _ = filtered_sorted_distribution(logits, RowSettings(torch.ones(2), torch.ones(2)))
    assert probs.dtype == torch.float32
    probs64, _ = filtered_sorted_distribution(logits.double(), RowSettings(torch.ones(2), torch.ones(2)))
    assert probs64.dtype == torch.float64


@given(seed=st.integers(0, 2**31 - 1), vocab=st.integers(2, 300),
       temperature=st.sampled_from([0.0, 0.05, 0.5, 1.0, 1.7]) | st.floats(0.01, 3.0),
       nucleus=st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0), uniform=st.floats(0.0, 0.9999999))
def test_picks_match_the_float64_reference(seed, vocab, temperature, nucleus, uniform):
    logits = torch.randn(1, vocab, generator=torch.Generator().manual_seed(seed)) * 4
    token = select_tokens(logits, RowSettings(torch.tensor([temperature]), torch.tensor([nucleus])),
                          torch.tensor(uniform, dtype=torch.float32)).item()
    expected, u_margin, nucleus_margin = reference_pick(logits[0].numpy(), float(np.float32(temperature)),
                                                        float(np.float32(nucleus)), float(np.float32(uniform)))
    if min(u_margin, nucleus_margin) > SAFE_MARGIN:
        assert token == expected


@given(seed=st.integers(0, 2**31 - 1), temperature=st.floats(0.2, 2.0), top_p=st.floats(0.05, 0.99))
def test_filtered_distribution_matches_transformers_warpers(seed, temperature, top_p):
    logits = torch.randn(1, 200, generator=torch.Generator().manual_seed(seed)) * 3
    scores = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits.clone()))
    expected = torch.softmax(scores, dim=-1)
    ours = full_distribution(logits, RowSettings(torch.tensor([temperature]), torch.tensor([top_p])))
    sorted_probs, _ = sorted_probabilities(logits, torch.tensor([temperature]))
    mass_before = torch.cumsum(sorted_probs, -1) - sorted_probs
    if (mass_before - top_p).abs().min() > SAFE_MARGIN:  # no token sits on the boundary
        assert torch.equal(ours > 0, expected > 0)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("temperature, nucleus", [(1.0, 1.0), (0.7, 0.8), (1.5, 0.5)])
def test_token_frequencies_under_random_u_match_the_filtered_distribution(temperature, nucleus):
    logits = torch.randn(1, 12, generator=torch.Generator().manual_seed(3)) * 1.5
    draws = 20000
    uniforms = torch.rand(draws, generator=torch.Generator().manual_seed(4))
    rows = logits.expand(draws, -1)
    tokens = select_tokens(rows, RowSettings(torch.full((draws,), temperature), torch.full((draws,), nucleus)),
                           uniforms.unsqueeze(-1))
    observed = torch.bincount(tokens, minlength=12).double() / draws
    expected = full_distribution(logits, RowSettings(torch.tensor([temperature]), torch.tensor([nucleus])))[0].double()
    assert torch.equal(observed > 0, expected > 0)
    tolerance = 5 * torch.sqrt(expected * (1 - expected) / draws) + 1e-9  # five standard errors
    assert bool(((observed - expected).abs() <= tolerance).all()), (observed, expected)


def test_a_thousand_random_picks_match_the_reference():
    generator = torch.Generator().manual_seed(5)
    compared = 0
    for _ in range(1000):
        vocab = int(torch.randint(2, 120, (1,), generator=generator))
        logits = torch.randn(1, vocab, generator=generator) * 3
        temperature = float(torch.rand(1, generator=generator)) * 2
        nucleus = float(torch.rand(1, generator=generator))
        uniform = torch.rand((), generator=generator)
        token = select_tokens(logits, RowSettings(torch.tensor([temperature]), torch.tensor([nucleus])), uniform).item()
        expected, u_margin, nucleus_margin = reference_pick(
            logits[0].numpy(), float(np.float32(temperature)), float(np.float32(nucleus)), float(uniform))
        if min(u_margin, nucleus_margin) > SAFE_MARGIN:
            compared += 1
            assert token == expected
    assert compared > 990


@settings(max_examples=25)  # each example runs 4 uniforms through three samplers
@given(seed=st.integers(0, 2**31 - 1), vocab=st.integers(70, 3000), candidates=st.sampled_from([1, 8, 64]),
       scale=st.sampled_from([0.5, 3.0, 12.0]), ties=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]),
       filters=st.booleans())
def test_candidates_and_the_threshold_search_pick_what_a_full_sort_picks(seed, vocab, candidates, scale, ties, dtype,
                                                                         filters):
    """Exactly the same tokens and statistics, whether the top candidates decide or not."""
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(24, vocab, generator=generator) * scale).to(dtype)
    if ties:  # many equal logits, also across the candidates' boundary
        logits = (logits * 2).round() / 2
    temperatures = torch.tensor([0.0, 0.3, 1.0, 1.5] * 6)
    nuclei = torch.tensor([0.0, 0.5, 0.95, 1.0, 0.2, 0.99] * 4)
    top_ks = torch.tensor([0, 1, 5, 0, 70, 3000, 0, 2] * 3) if filters else None
    min_ps = torch.tensor([0.0, 0.05, 0.0, 0.3, 0.01, 0.0] * 4) if filters else None
    for uniform in (0.0, 0.37, 0.999, 1 - 2**-24):
        settings = RowSettings(temperatures, nuclei, top_ks, min_ps)
        full = sample_step(logits, settings, uniform)
        for fast in (candidate_step(logits, settings, uniform, candidates), search_step(logits, settings, uniform)):
            assert torch.equal(fast.tokens, full.tokens)
            assert torch.equal(fast.logprobs, full.logprobs) and torch.equal(fast.entropies, full.entropies)
            assert torch.equal(fast.support_sizes, full.support_sizes)


def test_the_threshold_search_settles_ties_by_token_id_like_the_sort():
    logits = torch.tensor([[1.0, 3.0, 2.0, 3.0, 2.0, 3.0]])  # three tokens share the top
    for uniform in (0.0, 0.2, 0.4, 0.7, 0.95):
        for nucleus in (0.0, 0.3, 0.5, 1.0):
            args = (logits, RowSettings(torch.tensor([1.0]), torch.tensor([nucleus])), uniform)
            assert search_step(*args).tokens.tolist() == sample_step(*args).tokens.tolist()
    assert search_step(logits, RowSettings(torch.tensor([1.0]), torch.tensor([0.0])), 0.9).tokens.tolist() == [1]


@given(seed=st.integers(0, 2**31 - 1), vocab=st.integers(2, 300), temperature=st.floats(0.05, 2.5),
       nucleus=st.sampled_from([1.0]) | st.floats(0.0, 1.0), top_k=st.integers(0, 40),
       min_p=st.sampled_from([0.0]) | st.floats(0.0, 1.0), uniform=st.floats(0.0, 0.9999999))
def test_top_k_and_min_p_picks_match_the_float64_reference(seed, vocab, temperature, nucleus, top_k, min_p, uniform):
    logits = torch.randn(1, vocab, generator=torch.Generator().manual_seed(seed)) * 4
    settings = RowSettings(torch.tensor([temperature]), torch.tensor([nucleus]), torch.tensor([top_k]),
                           torch.tensor([min_p]))
    token = select_tokens(logits, settings, torch.tensor(uniform, dtype=torch.float32)).item()
    expected, u_margin, filter_margin = reference_pick(
        logits[0].numpy(), float(np.float32(temperature)), float(np.float32(nucleus)), float(np.float32(uniform)),
        top_k, float(np.float32(min_p)))
    if min(u_margin, filter_margin) > SAFE_MARGIN:
        assert token == expected


@given(seed=st.integers(0, 2**31 - 1), temperature=st.floats(0.2, 2.0), top_k=st.integers(1, 60),
       min_p=st.floats(0.0, 0.5))
def test_top_k_and_min_p_match_transformers_warpers(seed, temperature, top_k, min_p):
    """Applied to the same tempered distribution, a token is kept when every filter keeps it."""
    logits = torch.randn(1, 200, generator=torch.Generator().manual_seed(seed)) * 3
    tempered = TemperatureLogitsWarper(temperature)(None, logits.clone())
    kept = (TopKLogitsWarper(top_k)(None, tempered.clone()) > -float("inf")) & (
        MinPLogitsWarper(min_p)(None, tempered.clone()) > -float("inf"))
    expected = torch.softmax(tempered.masked_fill(~kept, -float("inf")), dim=-1)
    ours = full_distribution(logits, RowSettings(torch.tensor([temperature]), torch.tensor([1.0]),
                                                 torch.tensor([top_k]), torch.tensor([min_p])))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-7)


def test_top_k_keeps_exactly_k_where_transformers_keeps_every_tie_of_the_kth():
    logits = torch.tensor([[3.0, 1.0, 2.0, 2.0, 2.0, 0.0]])  # the 2nd to 4th most probable tie
    ours = full_distribution(logits, RowSettings(torch.ones(1), torch.ones(1), torch.tensor([2])))
    assert (ours[0] > 0).tolist() == [True, False, True, False, False, False]  # the lower id wins the tie
    theirs = TopKLogitsWarper(2)(None, logits.clone()) > -float("inf")
    assert theirs[0].tolist() == [True, False, True, True, True, False]
    for uniform in (0.1, 0.5, 0.99):
        for step in (search_step, lambda *a: candidate_step(*a, 2), sample_step):
            assert step(logits, RowSettings(torch.ones(1), torch.ones(1), torch.tensor([2])), uniform).tokens.item() in (0, 2)


def test_the_support_size_counts_only_the_tokens_the_rule_can_pick():
    """A token below one mass unit (p * 2**28 at most 1/2) has non-zero float probability but is
    never picked: every sampler leaves it out of mean_nucleus_size's count, as it leaves out the
    tokens a filter drops."""
    half_unit = 0.5 / MASS_UNIT
    probs = torch.tensor([[0.6, 0.3, 0.1 - 4e-9, 3e-9, half_unit, 1e-12, 1e-30]], dtype=torch.float64)
    logits = probs.log()
    everything = RowSettings(torch.tensor([1.0]), torch.tensor([1.0]))
    assert int((masses(probs) > 0).sum()) == 4
    for step in (sample_step, candidate_step, search_step):
        assert step(logits, everything, 0.5).support_sizes.tolist() == [4], step.__name__
        top_two = RowSettings(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([2]))
        assert step(logits, top_two, 0.5).support_sizes.tolist() == [2], step.__name__
def test_min_p_keeps_a_token_exactly_min_p_times_as_probable_as_the_top_one():
    values = torch.tensor([[0.4, 0.2, 0.2, 0.1, 0.1]])  # 0.2 is exactly half of 0.4 in float32 too
    half = RowSettings(torch.ones(1), torch.ones(1), min_ps=torch.tensor([0.5]))
    assert kept_in_order(values, half).tolist() == [[True, True, True, False, False]]
    every_tie_of_the_top = RowSettings(torch.ones(1), torch.ones(1), min_ps=torch.tensor([1.0]))
    assert kept_in_order(torch.tensor([[0.3, 0.3, 0.2, 0.2]]), every_tie_of_the_top).tolist() == [[True, True, False, False]]


def test_min_p_of_one_keeps_every_token_tied_with_the_top_in_each_sampler():
    logits = torch.tensor([[2.0, 0.0, 2.0, 1.0]])  # tokens 0 and 2 tie at the top
    settings = RowSettings(torch.ones(1), torch.ones(1), min_ps=torch.tensor([1.0]))
    for step in (sample_step, search_step, lambda *a: candidate_step(*a, 2)):
        assert step(logits, settings, 0.2).tokens.item() == 0
        assert step(logits, settings, 0.9).tokens.item() == 2  # half the kept mass is token 2's
        assert step(logits, settings, 0.9).support_sizes.item() == 2


def test_row_settings_of_keeps_a_filter_column_only_where_some_row_uses_it():
    rows = RowSettings.of([Setting(temperature=0.5, nucleus=0.25, top_k=3), Setting(), Setting(min_p=0.5)])
    assert (rows.temperatures.dtype, rows.nuclei.dtype, rows.top_ks.dtype, rows.min_ps.dtype) == (
        torch.float32, torch.float32, torch.long, torch.float32)
    assert rows.temperatures.tolist() == [0.5, 1.0, 1.0] and rows.nuclei.tolist() == [0.25, 1.0, 1.0]
    assert rows.top_ks.tolist() == [3, 0, 0] and rows.min_ps.tolist() == [0.0, 0.0, 0.5]
    neutral = RowSettings.of([Setting(top_k=0, min_p=0.0)] * 2)
    assert (neutral.top_ks, neutral.min_ps) == (None, None) and neutral.temperatures.tolist() == [1.0, 1.0]
    older = RowSettings.of([SimpleNamespace(temperature=0.0, nucleus=1.0)])  # settings without the filters
    assert (older.top_ks, older.min_ps) == (None, None) and older.temperatures.tolist() == [0.0]


def test_filtered_distributions_are_per_row_and_sorted_probabilities_in_float32_at_least():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    probs, ids = filtered_sorted_distribution(logits, RowSettings(torch.ones(2), torch.ones(2)))
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(2))
    assert ids.tolist() == [[0, 1, 2], [2, 0, 1]]
    values, _ = sorted_probabilities(logits.to(torch.bfloat16), torch.ones(2))
    assert values.dtype == torch.float32
