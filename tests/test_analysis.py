"""gpt2_sweep.load: run dirs, multirun dirs, one samples.json and older artifacts as one table."""
import json

import pytest
from hydra import compose, initialize_config_dir

import gpt2_sweep
from conftest import REPO
from gpt2_sweep.analysis.load import load_samples
from gpt2_sweep.runner.sweep import run_sweep

OLD_ARTIFACT = {  # the original script's keys only
    "metadata": {"model_name": "gpt2", "num_samples": 2, "max_length": 5, "nucleus": False,
                 "temperatures": True, "prompt": None, "p_values": [0.1, 0.2, 0.3, 0.4]},
    "texts": [{"nucleus": 1.0, "temperature": 0.0, "text": "a"},
              {"nucleus": 1.0, "temperature": 1.2, "text": "b"}],
}


@pytest.fixture(scope="module")
def sweep_dir(tiny_model_dir, tmp_path_factory):
    """A multirun dir by hand: two runs, and old artifacts as jobs 2 and 10."""
    directory = tmp_path_factory.mktemp("multirun")
    jobs = {"0": ["sampler=temperature", "num_samples=3", "prompt=The fox"],
            "1": ["sampler=both", "sampler.schedule=grid", "num_samples=2", "prompt=A sweep", "seed=1"]}
    for job, overrides in jobs.items():
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"model.name={tiny_model_dir}", "max_length=12",
                                                            *overrides])
        run_sweep(cfg, directory / job, overrides)
    for job in ("2", "10"):
        (directory / job).mkdir()
        (directory / job / "samples.json").write_text(json.dumps(OLD_ARTIFACT), encoding="utf-8")
    return directory


def test_a_multirun_dir_is_one_row_per_sample_jobs_in_number_order(sweep_dir, tiny_model_dir):
    samples = gpt2_sweep.load(sweep_dir)
    assert list(samples.job) == ["0"] * 3 + ["1"] * 4 + ["2"] * 2 + ["10"] * 2
    assert list(samples.artifact.unique()) == [str(sweep_dir / job / "samples.json") for job in ("0", "1", "2", "10")]
    assert list(samples["sample"]) == [0, 1, 2, 0, 1, 2, 3, 0, 1, 0, 1]
    run = samples[samples.job == "1"]
    assert list(zip(run.temperature, run.nucleus)) == [(0.0, 0.0), (0.0, 1.0), (1.2, 0.0), (1.2, 1.0)]
    assert (run.prompt == "A sweep").all() and (run.seed == 1).all()
    assert (run.model_source == str(tiny_model_dir)).all()
    assert run.overrides.iloc[0] == "sampler=both sampler.schedule=grid num_samples=2 prompt=A sweep seed=1"
    for _, row in samples[samples.job.isin(["0", "1"])].iterrows():
        assert row.text.startswith(row.prompt) and row.text.endswith(row.continuation)
        assert len(row.tokens) == 12 and row.prompt_tokens == len(row.tokens) - row.generated_tokens
        assert len(row.token_logprobs) == len(row.token_strings) == row.generated_tokens
        assert row.perplexity > 1 and row.p_values == samples.p_values[samples.job == row.job].iloc[0]
    assert list(run.diverges_from.isna()) == [True, True, True, False]  # 3 greedy (temperature or nucleus 0)
    assert str(run.diverges_from.dtype) == "Int64"


def test_old_artifacts_load_with_their_fields_and_empty_new_ones(sweep_dir):
    old = gpt2_sweep.load(sweep_dir / "2")
    assert list(old.job) == [".", "."] and list(old.text) == ["a", "b"]
    assert list(old.temperature) == [0.0, 1.2] and (old.model == "gpt2").all()
    assert old.tokens.isna().all() and old.model_source.isna().all() and old.seed.isna().all()
    assert "perplexity" not in old  # it holds no metrics
    mixed = gpt2_sweep.load(sweep_dir)
    assert mixed.perplexity[mixed.job == "2"].isna().all()


def test_a_run_dir_and_a_samples_json_load_alone(sweep_dir):
    run = gpt2_sweep.load(sweep_dir / "0")
    assert len(run) == 3 and (run.job == ".").all() and list(run.temperature) == [0.0, 0.6, 1.2]
    one_file = gpt2_sweep.load(sweep_dir / "1" / "samples.json")
    assert len(one_file) == 4 and (one_file.artifact == str(sweep_dir / "1" / "samples.json")).all()


def test_first_divergence_takes_table_rows(sweep_dir):
    run = gpt2_sweep.load(sweep_dir / "0")
    greedy, hottest = run.iloc[0], run.iloc[2]
    divergence = gpt2_sweep.first_divergence(greedy, hottest)
    assert divergence.position == hottest.diverges_from
    t = greedy.prompt_tokens + divergence.position
    assert divergence.sequence_position == t and divergence.u == greedy.p_values[t - 1]
    assert divergence.b.token_id == hottest.tokens[t] and divergence.b.token_string == hottest.token_strings[divergence.position]
    assert gpt2_sweep.first_divergence(greedy, greedy) is None


def test_a_path_without_artifacts_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no samples.json under"):
        gpt2_sweep.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such run dir"):
        gpt2_sweep.load(tmp_path / "missing")


def test_each_sample_says_which_axes_its_run_swept_and_on_which_schedule(sweep_dir, tiny_model_dir):
    samples = gpt2_sweep.load(sweep_dir)
    runs = samples.groupby("job", sort=False)[["swept", "schedule"]].first()
    assert runs.to_dict("index") == {"0": {"swept": "temperature", "schedule": "paired"},
                                     "1": {"swept": "temperature nucleus", "schedule": "grid"},
                                     "2": {"swept": "temperature", "schedule": "paired"},  # older: its switches
                                     "10": {"swept": "temperature", "schedule": "paired"}}
    # The README's example: a temperature sweep's means, without the grid's samples at those temperatures.
    means = samples[samples.swept == "temperature"].groupby(["model", "temperature"]).perplexity.mean()
    assert list(means.index) == [(str(tiny_model_dir), 0.0), (str(tiny_model_dir), 0.6), (str(tiny_model_dir), 1.2),
                                 ("gpt2", 0.0), ("gpt2", 1.2)]


def test_without_tokens_the_table_leaves_out_only_the_per_token_lists(sweep_dir):
    full, light = gpt2_sweep.load(sweep_dir), load_samples(sweep_dir, tokens=False)
    assert set(full.columns) - set(light.columns) == {"tokens", "token_strings", "token_logprobs", "token_kept"}
    assert full.drop(columns=["tokens", "token_strings", "token_logprobs", "token_kept"]).equals(light)
