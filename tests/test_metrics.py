"""Per-sample metrics against hand-made sequences and an independent float64 teacher-forced pass."""
import copy
import math

import numpy as np
import pytest
import torch

from conftest import single_prompt
from gpt2_sweep.decoding.generation import generate
from gpt2_sweep.analysis.metrics import distinct_n, repetition, sample_metrics
from gpt2_sweep.decoding.sampling import MASS_UNIT, RowSettings, shared_uniforms
from reference import SAFE_MARGIN, reference_distribution


def test_distinct_n_on_hand_made_sequences():
    tokens = [1, 2, 1, 2, 3]
    assert distinct_n(tokens, 1) == 3 / 5
    assert distinct_n(tokens, 2) == 3 / 4   # (1,2) (2,1) (1,2) (2,3)
    assert distinct_n(tokens, 3) == 3 / 3
    assert distinct_n([7], 2) is None


def test_repetition_counts_4grams_seen_earlier_in_the_same_sample():
    assert repetition([1, 2, 3, 4, 1, 2, 3, 4]) == 1 / 5   # the 4-gram (1,2,3,4) comes back once
    assert repetition([5] * 8) == 4 / 5                    # every 4-gram after the first repeats
    assert repetition(list(range(10))) == 0.0
    assert repetition([1, 2, 3]) is None


def test_sample_metrics_from_step_statistics():
    metrics = sample_metrics([4, 4, 5], [-1.0, -2.0, -3.0], [0.5, 1.0, 1.5], [1, 2, 3])
    assert metrics["logprob"] == -6.0 and metrics["perplexity"] == pytest.approx(math.exp(2.0))
    assert metrics["mean_entropy"] == 1.0 and metrics["mean_nucleus_size"] == 2.0
    assert metrics["distinct_1"] == 2 / 3 and metrics["generated_tokens"] == 3


def pickable_count(logits, temperature: float, kept) -> int:
    """How many kept tokens have a tempered probability of at least one mass unit (2**-28, rounded)."""
    if temperature == 0:
        return 1
    scaled = logits / temperature
    probs = np.exp(scaled - np.logaddexp.reduce(scaled))
    return int((np.round(probs[kept] * MASS_UNIT) >= 1).sum())


def test_step_statistics_match_a_float64_teacher_forced_recomputation(tiny_model, tokenizer):
    prompt = tokenizer.encode("A sweep over")
    temperatures, nuclei = torch.tensor([0.0, 0.5, 1.0, 1.3]), torch.tensor([0.3, 0.9, 1.0, 0.6])
    generated = generate(tiny_model, *single_prompt(prompt, RowSettings(temperatures, nuclei), shared_uniforms(2, 19), 20))
    model64 = copy.deepcopy(tiny_model).double()
    checked = 0
    for row in range(4):
        tokens = prompt + generated.tokens[row].tolist()
        with torch.no_grad():
            logits = model64(input_ids=torch.tensor([tokens])).logits[0].numpy()
        for step, position in enumerate(range(len(prompt), len(tokens))):
            step_logits = logits[position - 1]
            log_probs = step_logits - np.logaddexp.reduce(step_logits)
            assert generated.logprobs[row, step].item() == pytest.approx(log_probs[tokens[position]], abs=1e-4)
            kept, probs, margin = reference_distribution(step_logits, temperatures[row].item(), nuclei[row].item())
            if margin > SAFE_MARGIN:
                checked += 1
                entropy = -sum(p * math.log(p) for p in probs if p > 0)
                assert generated.entropies[row, step].item() == pytest.approx(entropy, abs=1e-4)
                assert generated.support_sizes[row, step].item() == pickable_count(step_logits, temperatures[row].item(), kept)
    assert checked > 60
