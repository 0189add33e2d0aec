"""Golden values: a seed's uniforms and the tokens they draw from a fixed tiny model.

An artifact's samples can be regenerated from its seed, so the mapping from a seed to its uniforms
(and from them to tokens, through the rule) is a promise across versions. Changing any value below
is a deliberate break: say so in the README (Sampling semantics) and in the commit, as the change to
whole-number masses did.
"""
import torch

from conftest import single_prompt, tiny_gpt2
from gpt2_sweep.decoding.generation import generate
from gpt2_sweep.decoding.sampling import RowSettings, shared_uniforms

FIRST_UNIFORMS = {
    0: [0.49625658988952637, 0.7682217955589294, 0.08847743272781372, 0.13203048706054688],
    1: [0.7576315999031067, 0.2793108820915222, 0.40306925773620605, 0.7346844673156738],
    2026: [0.15248113870620728, 0.2519153356552124, 0.7310043573379517, 0.06426572799682617],
    2**31 - 1: [0.7081288695335388, 0.3542391061782837, 0.10543233156204224, 0.5996444225311279],
}


def test_a_seed_draws_the_same_uniforms_in_every_version():
    for seed, expected in FIRST_UNIFORMS.items():
        assert shared_uniforms(seed, 4).tolist() == expected, seed
        assert shared_uniforms(seed, 40)[:4].tolist() == expected, seed  # a run's length changes no value


# Recorded with torch 2.13.0 and transformers 5.24. Every pick below is at least 1.6e-4 away from a
# cumulative or nucleus boundary in the float64 rule, far beyond float32 rounding (about 1e-7), so a
# change of kernels cannot flip one. The weights come from torch.manual_seed through GPT-2's own
# initialisation (conftest.tiny_gpt2): should transformers change that, re-record these and say why.
SETTINGS = RowSettings(temperatures=torch.tensor([1.0, 0.7, 1.0, 0.0]), nuclei=torch.tensor([1.0, 0.9, 0.5, 1.0]))
FIRST_TOKENS = [[0, 63, 72, 9, 41, 75, 25],
                [0, 2, 25, 9, 41, 75, 11],
                [0, 2, 39, 18, 88, 43, 4],
                [0, 2, 40, 47, 41, 91, 11]]


def test_a_fixed_tiny_model_draws_the_same_first_tokens_from_seed_0():
    model = tiny_gpt2(vocab_size=97)
    drawn = generate(model, *single_prompt([0], SETTINGS, shared_uniforms(0, 6), max_length=7))
    assert [[0] + row for row in drawn.tokens.tolist()] == FIRST_TOKENS  # the prompt, then the picks
