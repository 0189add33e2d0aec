"""Measures across samples (Self-BLEU-4, Zipf, repetition %, corpus perplexity) against cases worked
by hand and nltk; the prompt bootstrap's coverage; the pooled Table 1 on synthetic frames."""
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

import gpt2_sweep
from conftest import REPO

from gpt2_sweep.analysis.intervals import cluster_bootstrap
from gpt2_sweep.analysis.measures import (corpus_perplexity, ends_in_repetition, repetition_percent, self_bleu,
                                          zipf_coefficient)
from gpt2_sweep.analysis.study_table import fixed, study_markdown, study_table, with_interval
from gpt2_sweep.runner.sweep import run_sweep


def nltk_self_bleu(samples, drawn):
    """The definition: nltk's sentence_bleu of each drawn sample against all the others."""
    return np.mean([sentence_bleu(samples[:i] + samples[i + 1:], samples[i],
                                  smoothing_function=SmoothingFunction().method1) for i in drawn])


def test_self_bleu_of_identical_samples_is_1():
    assert self_bleu([[5, 6, 7, 8, 9]] * 3) == 1.0


def test_self_bleu_by_hand():
    # a b c d against a b c e (and back): matches 3/4, 2/3, 1/2 and 0/1, the last smoothed to 0.1/1
    assert self_bleu([[1, 2, 3, 4], [1, 2, 3, 5]]) == pytest.approx((3 / 4 * 2 / 3 * 1 / 2 * 0.1) ** 0.25)
    # the short one matches all its n-grams but pays the brevity penalty exp(1 - 8/4); the long one
    # matches 4/8, 3/7, 2/6, 1/5 against a shorter reference (no penalty)
    short, long = [1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7, 8]
    assert self_bleu([short, long]) == pytest.approx((math.exp(-1) + (4 / 8 * 3 / 7 * 2 / 6 * 1 / 5) ** 0.25) / 2)
    assert self_bleu([short]) is None


def test_self_bleu_equals_nltk_sentence_bleu_against_all_the_others():
    rng = np.random.default_rng(3)
    for _ in range(40):
        # few token values and uneven lengths: repeated n-grams, ties of counts and of lengths, empty samples
        samples = [rng.integers(0, 5, rng.integers(0, 14)).tolist() for _ in range(rng.integers(2, 9))]
        assert self_bleu(samples) == nltk_self_bleu(samples, range(len(samples)))


def test_self_bleu_scores_the_hypotheses_drawn_with_the_seed_against_every_sample():
    rng = np.random.default_rng(4)
    samples = [rng.integers(0, 6, 10).tolist() for _ in range(7)]
    drawn = np.sort(np.random.default_rng(11).choice(7, 3, replace=False))
    assert self_bleu(samples, hypotheses=3, seed=11) == nltk_self_bleu(samples, drawn)


def test_zipf_coefficient_of_perfect_zipf_counts():
    # token r occurs 60 / r times: log frequency falls by exactly 1 per unit of log rank
    tokens = [rank for rank in range(1, 7) for _ in range(60 // rank)]
    assert zipf_coefficient([tokens[:100], tokens[100:]]) == pytest.approx(1.0, abs=1e-12)
    squared = [rank for rank in range(1, 4) for _ in range(36 // rank ** 2)]   # 36, 9, 4
    assert zipf_coefficient([squared]) == pytest.approx(2.0, abs=1e-12)
    # only the `ranks` most frequent tokens enter the fit: a tail of 50 tokens seen once is left out
    assert zipf_coefficient([tokens + list(range(100, 150))], ranks=6) == pytest.approx(1.0, abs=1e-12)
    assert zipf_coefficient([tokens + list(range(100, 150))]) < 0.9
    assert zipf_coefficient([[3, 3, 3]]) is None


def test_ends_in_repetition_by_holtzmans_rule():
    assert ends_in_repetition([9, 8, 1, 2, 3, 1, 2, 3])              # a 3-token phrase twice at the end
    assert not ends_in_repetition([9, 8, 1, 2, 3, 1, 2, 3, 4])       # ... but not at the end
    assert not ends_in_repetition([9, 8, 1, 2, 1, 2, 1, 2])          # 2 tokens, 3 times: too short a phrase
    assert not ends_in_repetition([9] + [1] * 50)                    # 1 token 50 times: not more than 50
    assert ends_in_repetition([9] + [1] * 51)
    # the phrase repeated most often wins (the shortest among ties): 1 six times, not 1 1 1 twice
    assert not ends_in_repetition([9, 1, 1, 1, 1, 1, 1])
    assert not ends_in_repetition([9, 1, 2, 1, 2, 9, 1, 2, 1, 2])  # 1 2 twice, as often as 9 1 2 1 2
    # one final stop token is dropped first
    assert ends_in_repetition([9, 1, 2, 3, 1, 2, 3, 0], stop_token_id=0)
    assert not ends_in_repetition([9, 1, 2, 3, 1, 2, 3, 0])
    assert not ends_in_repetition([])


def test_repetition_percent_is_the_share_of_samples_ending_in_a_repeat():
    samples = [[9, 1, 2, 3, 1, 2, 3], [1, 2, 3, 4], [5, 6, 7], [1, 2, 1, 2, 1, 2]]
    assert repetition_percent(samples) == 25.0
    assert repetition_percent([]) is None


def test_corpus_perplexity_weighs_every_token_alike():
    # exp(6 / 3), not the mean of the samples' perplexities exp(1.5) and exp(3)
    assert corpus_perplexity([[-1.0, -2.0], [-3.0]]) == pytest.approx(math.exp(2.0))
    assert corpus_perplexity([[], []]) is None


def test_prompt_bootstrap_covers_the_true_mean_about_95_percent_of_the_time():
    # 200 simulated studies side by side (one column each) of 40 prompts x 5 samples: a strong
    # effect per prompt, then noise per sample, around a true mean of 3
    rng = np.random.default_rng(5)
    prompts = np.repeat(np.arange(40), 5)
    studies = 3.0 + rng.normal(0.0, 1.0, (40, 200))[prompts] + rng.normal(0.0, 0.5, (200, 200))
    covered = np.mean([interval.low <= 3.0 <= interval.high for interval in cluster_bootstrap(studies, prompts)])
    assert 0.90 <= covered <= 0.99
    # each sample its own cluster: blind to a prompt's samples moving together, the interval is too narrow
    alone = np.mean([interval.low <= 3.0 <= interval.high
                     for interval in cluster_bootstrap(studies, np.arange(200))])
    assert alone < 0.80


def test_bootstrap_means_are_over_the_samples_that_have_a_value():
    values = np.array([[1.0, np.nan], [2.0, 4.0], [3.0, np.nan], [6.0, 8.0]])
    first, second = cluster_bootstrap(values, np.array([0, 0, 1, 1]))
    assert first.mean == 3.0 and second.mean == 6.0
    assert first.low <= first.mean <= first.high and second.low == 4.0 and second.high == 8.0
    # a prompt weighs by its samples: with one prompt of 0 and one of nine 10s, the mean is 9, and so
    # is every resample that draws each once (half of them: the middle 20% of the resampled means)
    weighed = cluster_bootstrap(np.array([0.0] + [10.0] * 9), np.array([0] + [1] * 9), confidence=0.2)[0]
    assert weighed.mean == 9.0 and weighed.low == weighed.high == 9.0
    only = cluster_bootstrap(np.array([1.0, 2.0]), np.array([0, 0]))[0]
    assert only.mean == 1.5 and math.isnan(only.low)


def study_frame(draws=2, prompts=3, with_index=True):
    """A synthetic load() frame: 2 settings x prompts x draws, 4 prompt tokens then 6 generated ones;
    a prompt's samples share one perplexity (10 x the prompt, + 1 for the second setting)."""
    rows = []
    for prompt in range(prompts):
        for draw in range(draws):
            for temperature in (0.0, 1.0):
                generated = [100 * prompt + 10 * draw + step for step in range(6)] if temperature else [7] * 6
                rows.append({
                    "model": "tiny", "prompt": f"prompt {prompt}", "seed": 0, "temperature": temperature,
                    "nucleus": 1.0, "tokens": [1, 2, 3, 4] + generated, "prompt_tokens": 4,
                    "token_logprobs": [-0.5] * 6, "perplexity": 10.0 * prompt + temperature,
                    "mean_entropy": temperature, "repetition": 0.0,
                    **({"prompt_index": prompt, "draw": draw} if with_index else {}),
                    "reference_tokens": [50 + prompt, 60, 70, 80 + prompt],
                    "reference_token_logprobs": [-1.0 - prompt] * 4,
                })
    return pd.DataFrame(rows)


def test_study_table_pools_settings_over_prompts_and_draws_after_the_human_row():
    table = study_table(study_frame())
    assert table["method"].tolist() == ["Human", "Greedy", "Pure sampling"]
    assert table["n"].tolist() == [3, 6, 6] and table["prompts"].tolist() == [3, 3, 3]
    human, greedy, sampled = table.to_dict("records")
    # the human continuations' perplexity under the model: tokens of log p -1, -2, -3, four each
    assert human["corpus_perplexity"] == pytest.approx(math.exp(2.0))
    assert human["perplexity"] == pytest.approx((math.e + math.e ** 2 + math.e ** 3) / 3)
    assert math.isnan(human["mean_entropy"])
    assert greedy["perplexity"] == 10.0 and sampled["perplexity"] == 11.0
    assert greedy["perplexity_low"] < 10.0 < greedy["perplexity_high"]
    # the measures see the generated tokens only: the shared prompt would raise Self-BLEU
    generated = [[100 * prompt + 10 * draw + step for step in range(6)] for prompt in range(3) for draw in range(2)]
    assert sampled["self_bleu4"] == self_bleu(generated)
    assert greedy["self_bleu4"] == 1.0 and greedy["repetition_percent"] == 0.0   # 7 7 7 7 7 7: 1 token 6 times
    assert sampled["zipf_coefficient"] == zipf_coefficient(generated)
    assert sampled["corpus_perplexity"] == pytest.approx(math.exp(0.5))
    # the references given apart, one row per prompt, make the same Human row
    frame = study_frame()
    references = frame.drop_duplicates("prompt_index")[["prompt_index", "reference_tokens", "reference_token_logprobs"]]
    apart = study_table(frame.drop(columns=["reference_tokens", "reference_token_logprobs"]), references)
    assert apart.drop(columns="model").iloc[0].equals(table.drop(columns="model").iloc[0])
    # a prompt without a reference leaves the Human row
    references["reference_tokens"] = references["reference_tokens"].where(references["prompt_index"] != 2, None)
    assert study_table(frame, references)["n"].tolist() == [2, 6, 6]


def test_study_table_resamples_prompts_not_samples():
    # every draw of a prompt has its prompt's values: more draws add samples, not independent evidence
    one, four = study_table(study_frame(draws=1)), study_table(study_frame(draws=4))
    assert four["n"].tolist() == [3, 12, 12] and one["n"].tolist() == [3, 3, 3]
    for column in ("perplexity", "perplexity_low", "perplexity_high"):
        assert one[column].tolist() == four[column].tolist()


def test_study_table_without_prompt_index_tells_prompts_by_their_text():
    table = study_table(study_frame(with_index=False))
    assert table["prompts"].tolist() == [3, 3, 3]
    single = study_frame(prompts=1, with_index=False).drop(columns=["reference_tokens", "reference_token_logprobs"])
    table = study_table(single)
    assert table["method"].tolist() == ["Greedy", "Pure sampling"]   # no references: no Human row
    assert table["prompts"].tolist() == [1, 1] and math.isnan(table["perplexity_low"][0])


def test_study_markdown_writes_fixed_numbers_and_intervals():
    assert with_interval(12.345, 11.8, 12.94) == "12.3 [11.8, 12.9]"
    assert fixed(123456789.0) == "123456789" and fixed(0.0000123456) == "0.0000123" and fixed(None) == "-"
    lines = study_markdown(study_table(study_frame())).splitlines()
    assert lines[0].startswith("| Method | n | Prompts | Perplexity | Self-BLEU4 | Zipf coefficient | Repetition % |")
    assert lines[2].startswith("| Human | 3 | 3 | 7.39 |") and lines[3].startswith("| Greedy | 6 | 3 |")
    assert "e+" not in "\n".join(lines) and "e-" not in "\n".join(lines)


ORIGINAL_ARTIFACT = {  # the original script's keys only: no tokens, no metrics
    "metadata": {"model_name": "gpt2", "num_samples": 2, "max_length": 5, "nucleus": False,
                 "temperatures": True, "prompt": None, "p_values": [0.1, 0.2, 0.3, 0.4]},
    "texts": [{"nucleus": 1.0, "temperature": 0.0, "text": "a"},
              {"nucleus": 1.0, "temperature": 1.2, "text": "b"}],
}


def test_study_table_of_a_loaded_multirun(tiny_model_dir, tmp_path):
    # one run of three temperatures, its copy as a second job (a second draw, the same tokens), and an
    # artifact of the original script's keys
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model.name={tiny_model_dir}", "max_length=12",
                                                        "sampler=temperature", "num_samples=3", "prompt=The fox"])
    run_sweep(cfg, tmp_path / "0", [])
    shutil.copytree(tmp_path / "0", tmp_path / "1")
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "samples.json").write_text(json.dumps(ORIGINAL_ARTIFACT), encoding="utf-8")
    samples = gpt2_sweep.load(tmp_path)
    table = study_table(samples)
    tiny = table[table["model"] == str(tiny_model_dir)]
    assert tiny["method"].tolist() == ["Greedy", "Sampling t=0.6", "Sampling t=1.2"]
    assert tiny["n"].tolist() == [2, 2, 2] and tiny["prompts"].tolist() == [1, 1, 1]
    assert tiny["self_bleu4"].tolist() == [1.0, 1.0, 1.0]
    loaded = samples[(samples["model"] == str(tiny_model_dir)) & (samples["temperature"] == 1.2)]
    row = tiny.iloc[2]
    assert row["corpus_perplexity"] == pytest.approx(loaded["perplexity"].iloc[0])
    assert row["perplexity"] == pytest.approx(loaded["perplexity"].iloc[0])
    assert row["zipf_coefficient"] == zipf_coefficient(
        [tokens[prompt:] for tokens, prompt in zip(loaded["tokens"], loaded["prompt_tokens"])])
    old = table[table["model"] == "gpt2"]   # no tokens, no metrics: counted, nothing measured
    assert old["n"].tolist() == [1, 1] and old["self_bleu4"].isna().all() and old["perplexity"].isna().all()
    assert "| Greedy |" in study_markdown(table)


def test_a_value_within_rounding_of_zero_reads_0_never_minus_0():
    assert fixed(-3.29e-16) == "0" and fixed(-0.0) == "0"  # a least-squares slope of float noise
    assert with_interval(1.0, -0.0001, 2.0) == "1.00 [0.00, 2.00]"
    assert fixed(-0.123) == "-0.123" and fixed(0.5) == "0.500"
