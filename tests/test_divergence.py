"""Token-level fields of the artifact, and where samples part: first_divergence and diverges_from."""
import json

import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO
from gpt2_sweep import first_divergence
from gpt2_sweep.analysis.divergence import divergence_from_reference
from gpt2_sweep.runner.loading import ModelSource, load_tokenizer
from gpt2_sweep.runner.sweep import run_sweep

P_VALUES = [0.11, 0.22, 0.33, 0.44, 0.55, 0.66]


def entry(generated, prompt=(7, 8)):
    """A hand-made text entry: generated token i has string 't<i>' and log p -i/10."""
    return {"temperature": 1.0, "nucleus": 1.0, "tokens": [*prompt, *generated], "prompt_tokens": len(prompt),
            "token_strings": [f"t{token}" for token in generated],
            "token_logprobs": [-token / 10 for token in generated]}


def test_identical_samples_have_no_divergence():
    assert first_divergence(entry([1, 2, 3]), entry([1, 2, 3]), P_VALUES) is None


def test_divergence_at_the_first_generated_token_reads_the_first_uniform_after_the_prompt():
    divergence = first_divergence(entry([1, 2, 3]), entry([4, 2, 3]), P_VALUES)
    assert (divergence.position, divergence.sequence_position) == (0, 2)
    assert divergence.u == P_VALUES[1]  # position t = 2 reads p[t - 1]
    assert (divergence.a.token_id, divergence.a.token_string, divergence.a.logprob) == (1, "t1", -0.1)
    assert (divergence.b.token_id, divergence.b.token_string, divergence.b.logprob) == (4, "t4", -0.4)


def test_divergence_in_the_middle():
    divergence = first_divergence(entry([1, 2, 3, 5]), entry([1, 2, 6, 5]), P_VALUES)
    assert (divergence.position, divergence.u) == (2, P_VALUES[3])
    assert (divergence.a.token_id, divergence.b.token_id) == (3, 6)


def test_a_sample_that_ends_first_diverges_where_it_ends():
    divergence = first_divergence(entry([1, 2]), entry([1, 2, 3]), P_VALUES)
    assert divergence.position == 2 and divergence.a is None and divergence.b.token_id == 3


def test_u_is_known_only_from_p_values_both_samples_share():
    a, b = entry([1]), entry([2])
    assert first_divergence(a, b).u is None
    assert first_divergence({**a, "p_values": P_VALUES}, {**b, "p_values": P_VALUES}).u == P_VALUES[1]
    assert first_divergence({**a, "p_values": P_VALUES}, {**b, "p_values": [0.9] * 6}).u is None


def test_without_a_greedy_sample_the_first_sample_is_the_reference():
    texts = [entry([1, 2, 3]), entry([1, 5, 3]), entry([4, 2, 3])]
    assert divergence_from_reference(texts) == [None, 1, 0]
    texts[2]["nucleus"] = 0.0  # a greedy sample, wherever it is, is the reference
    assert divergence_from_reference(texts) == [0, 0, None]
    texts[1]["temperature"] = 0.0  # the first greedy one, by temperature or nucleus
    assert divergence_from_reference(texts) == [1, None, 0]


def test_u_is_none_past_the_p_values_and_picks_of_older_artifacts_have_no_strings():
    last = first_divergence(entry([1, 2, 3, 4, 5]), entry([1, 2, 3, 4, 6]), P_VALUES)
    assert (last.sequence_position, last.u) == (6, P_VALUES[5])  # the last p value
    assert first_divergence(entry([1, 2, 3, 4, 5, 6]), entry([1, 2, 3, 4, 5, 7]), P_VALUES).u is None
    own = [{**entry(generated), "p_values": P_VALUES} for generated in ([1, 2, 3, 4, 5], [1, 2, 3, 4, 6])]
    assert first_divergence(*own).u == P_VALUES[5]
    longer = [{**entry(generated), "p_values": P_VALUES} for generated in ([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7])]
    assert first_divergence(*longer).u is None
    older = {"tokens": [7, 8, 1], "prompt_tokens": 2, "token_strings": float("nan")}  # a table row: NaN
    divergence = first_divergence(older, {"tokens": [7, 8, 2], "prompt_tokens": 2})
    assert (divergence.a.token_id, divergence.a.token_string, divergence.a.logprob) == (1, None, None)
    assert (divergence.b.token_string, divergence.b.logprob) == (None, None)


def test_samples_of_different_prompts_or_without_tokens_are_refused():
    with pytest.raises(ValueError, match="^the two samples continue different prompts$"):
        first_divergence(entry([1], prompt=(7,)), entry([1], prompt=(9,)))
    with pytest.raises(ValueError, match=r"^a sample without tokens \(an artifact older than the token ids\) cannot be compared$"):
        first_divergence({"temperature": 0.0, "nucleus": 0.0, "text": "old"}, entry([1]))


@pytest.fixture(scope="module")
def nucleus_run(tiny_model_dir, tmp_path_factory):
    """Nucleus from 1 down to 0: the greedy sample is the last one."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"model.name={tiny_model_dir}", "sampler=nucleus", "sampler.nucleus_range=[1.0,0.0]",
            "num_samples=6", "max_length=24", "prompt=The fox", "seed=3"])
    path = run_sweep(cfg, tmp_path_factory.mktemp("nucleus-run"))
    return json.loads(path.read_text(encoding="utf-8"))


def test_diverges_from_counts_from_the_greedy_sample(nucleus_run):
    texts = nucleus_run["texts"]
    reference = texts[-1]
    assert reference["nucleus"] == 0.0 and reference["metrics"]["diverges_from"] is None
    departed = 0
    for sample in texts:
        position = sample["metrics"]["diverges_from"]
        generated, greedy = sample["tokens"][sample["prompt_tokens"]:], reference["tokens"][reference["prompt_tokens"]:]
        if position is None:
            assert generated == greedy
        else:
            departed += 1
            assert generated[:position] == greedy[:position] and generated[position] != greedy[position]
            divergence = first_divergence(sample, reference, nucleus_run["metadata"]["p_values"])
            assert divergence.position == position
            assert divergence.u == nucleus_run["metadata"]["p_values"][sample["prompt_tokens"] + position - 1]
            assert divergence.a.logprob == sample["token_logprobs"][position]
    assert departed >= 3  # the tiny model is far from certain: 5 of 6 leave the greedy path here


def test_token_level_fields_cover_the_generated_tokens(nucleus_run, tiny_model_dir):
    tokenizer = load_tokenizer(ModelSource(nucleus_run["metadata"]["model_source"]))
    assert nucleus_run["metadata"]["model_source"] == str(tiny_model_dir)
    for sample in nucleus_run["texts"]:
        generated = sample["tokens"][sample["prompt_tokens"]:]
        assert len(sample["token_logprobs"]) == len(generated) == sample["metrics"]["generated_tokens"]
        assert sum(sample["token_logprobs"]) == pytest.approx(sample["metrics"]["logprob"], abs=1e-4)
        assert sample["token_strings"] == [tokenizer.decode([token]) for token in generated]
