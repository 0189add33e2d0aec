"""The summary's pooled tables (Holtzman's Table 1 with intervals) and the line plots' intervals, on
studies and slices of one run through run_sweep, and on one-prompt runs."""
import csv
import json
import math
import shutil

import numpy as np
import pytest

from conftest import compose_config
import gpt2_sweep
from gpt2_sweep.analysis import pooled
from gpt2_sweep.analysis.intervals import cluster_bootstrap
from gpt2_sweep.analysis.load import load_samples
from gpt2_sweep.analysis.measures import self_bleu, zipf_coefficient
from gpt2_sweep.analysis.plots import line_points
from gpt2_sweep.analysis.summary import summarize
from gpt2_sweep.analysis.tables import per_setting, write_markdown
from gpt2_sweep.runner.sweep import run_sweep

PROMPTS = ["The quick brown fox jumps", "A sweep", "Language models write one token", "Once upon a time"]
NEW_TOKENS = 6
METHODS = ["Human", "Greedy", "Sampling t=0.6", "Sampling t=1.2"]


def study_config(model_dir, prompt_file, *overrides):
    return compose_config(f"model.name={model_dir}", "sampler=temperature", "num_samples=3", "print_samples=0",
                          f"prompts={prompt_file}", "prompt_set.reference_column=human", "draws=2",
                          f"max_new_tokens={NEW_TOKENS}", *overrides)


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "human": f"the reference {i} of {p}"}) + "\n"
                            for i, p in enumerate(PROMPTS)))
    return path


@pytest.fixture(scope="module")
def study_dir(tiny_model_dir, prompt_file, tmp_path_factory):
    directory = tmp_path_factory.mktemp("study")
    run_sweep(study_config(tiny_model_dir, prompt_file), directory)
    summarize(directory)
    return directory


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def pooled_rows(path):
    """The pooled tables' rows of summary.md, as dicts of cell text, per table title."""
    tables, title, header = {}, None, None
    for line in path.read_text(encoding="utf-8").split("## Pooled over prompts and draws", 1)[1].splitlines():
        if line.startswith("### "):
            title, header = line[4:], None
            tables[title] = []
        elif line.startswith("| ") and header is None:
            header = [cell.strip() for cell in line.strip("|").split("|")]
        elif line.startswith("| "):
            tables[title].append(dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))))
    return tables


def test_a_studys_summary_has_its_pooled_table_human_first_with_intervals(study_dir, tiny_model_dir, capsys):
    tables = pooled_rows(study_dir / "summary.md")
    assert list(tables) == [str(tiny_model_dir)]
    rows = tables[str(tiny_model_dir)]
    assert [row["Method"] for row in rows] == METHODS
    assert [(row["n"], row["Prompts"]) for row in rows] == [("4", "4"), ("8", "4"), ("8", "4"), ("8", "4")]
    assert all(" [" in row["Perplexity per sample [95% CI]"] for row in rows)
    assert rows[0]["Entropy (nats) [95% CI]"] == "-"  # a reference has no sampled distribution

    samples = gpt2_sweep.load(study_dir)
    csv_rows = read_csv(study_dir / "summary_pooled.csv")
    assert [row["method"] for row in csv_rows] == METHODS
    assert {row["table"] for row in csv_rows} == {str(tiny_model_dir)}
    for row, temperature in zip(csv_rows[1:], (0.0, 0.6, 1.2)):
        setting = samples[samples.temperature == temperature]
        assert float(row["perplexity"]) == pytest.approx(setting.perplexity.mean(), rel=1e-12)
        assert float(row["distinct_2"]) == pytest.approx(setting.distinct_2.mean(), rel=1e-12)
        interval = cluster_bootstrap(setting[["perplexity"]].to_numpy(float), setting.prompt_index.to_numpy())[0]
        assert (float(row["perplexity_low"]), float(row["perplexity_high"])) == \
            pytest.approx((interval.low, interval.high), rel=1e-12)
        assert float(row["perplexity_low"]) <= float(row["perplexity"]) <= float(row["perplexity_high"])
        generated = [list(tokens[prompt:]) for tokens, prompt in zip(setting.tokens, setting.prompt_tokens)]
        assert float(row["self_bleu4"]) == pytest.approx(self_bleu(generated), rel=1e-12)
        assert float(row["zipf_coefficient"]) == pytest.approx(zipf_coefficient(generated), rel=1e-12)
        logprobs = np.concatenate(list(setting.token_logprobs))
        assert float(row["corpus_perplexity"]) == pytest.approx(math.exp(-logprobs.mean()), rel=1e-9)
    references = samples.drop_duplicates("prompt_index")
    human = np.concatenate(list(references.reference_token_logprobs))
    assert float(csv_rows[0]["corpus_perplexity"]) == pytest.approx(math.exp(-human.mean()), rel=1e-9)

    capsys.readouterr()
    summarize(study_dir)
    assert "; 1 table pooled over prompts in summary.md and summary_pooled.csv" in capsys.readouterr().out


@pytest.mark.slow
def test_slices_of_a_study_pool_as_the_whole_run(study_dir, tiny_model_dir, prompt_file, tmp_path):
    for job, (offset, limit) in enumerate([(0, 3), (3, 1)]):
        run_sweep(study_config(tiny_model_dir, prompt_file, f"prompt_set.offset={offset}", f"prompt_set.limit={limit}"),
                  tmp_path / str(job))
    summarize(tmp_path)
    # The same samples: the same tokens, so the same counts and token measures; log-probabilities to
    # float32 rounding, since rows of other prompts (and their left padding) shared the forwards.
    sliced, whole = read_csv(tmp_path / "summary_pooled.csv"), read_csv(study_dir / "summary_pooled.csv")
    assert [row.keys() for row in sliced] == [row.keys() for row in whole]
    for ours, theirs in zip(sliced, whole):
        for key in ("table", "method", "n", "prompts", "self_bleu4", "zipf_coefficient", "repetition_percent"):
            assert ours[key] == theirs[key], key
        for key, value in ours.items():
            if value and theirs[key] and key not in ("table", "method", "model"):
                assert float(value) == pytest.approx(float(theirs[key]), rel=1e-5), key
    assert len(pooled_rows(tmp_path / "summary.md")) == len(pooled_rows(study_dir / "summary.md"))


@pytest.mark.slow
def test_runs_that_differ_in_a_fixed_setting_get_a_table_each(study_dir, tiny_model_dir, prompt_file, tmp_path):
    run_sweep(study_config(tiny_model_dir, prompt_file, "prompt_set.limit=2"), tmp_path / "0")
    run_sweep(study_config(tiny_model_dir, prompt_file, "prompt_set.limit=2", "max_new_tokens=4"), tmp_path / "1")
    summarize(tmp_path)
    tables = pooled_rows(tmp_path / "summary.md")
    assert list(tables) == [f"{tiny_model_dir} (max_new_tokens=6)", f"{tiny_model_dir} (max_new_tokens=4)"]
    assert all([row["Method"] for row in rows] == METHODS for rows in tables.values())


@pytest.mark.slow
def test_a_huge_dir_keeps_its_means_and_intervals_and_says_why_the_measures_are_left_out(study_dir, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setattr(pooled, "MEASURED_ARTIFACT_BYTES", 0)
    huge = shutil.copytree(study_dir, tmp_path / "huge")
    summarize(huge)
    rows = read_csv(huge / "summary_pooled.csv")
    assert [row["method"] for row in rows] == METHODS
    assert all(row["self_bleu4"] == "" and row["corpus_perplexity"] == "" for row in rows[1:])
    samples = gpt2_sweep.load(huge)
    assert float(rows[3]["perplexity"]) == pytest.approx(samples[samples.temperature == 1.2].perplexity.mean())
    assert "exceed the 0 MiB whose token ids the summary loads" in (huge / "summary.md").read_text()


def one_prompt_run(model_dir, directory, prompt, *overrides):
    run_sweep(compose_config(f"model.name={model_dir}", "max_length=10", f"prompt={prompt}", "print_samples=0",
                             "sampler=temperature", "num_samples=3", *overrides), directory)


def test_a_one_prompt_runs_summary_keeps_its_table_and_adds_the_pooled_one(tiny_model_dir, tmp_path):
    one_prompt_run(tiny_model_dir, tmp_path / "0", "The fox")
    summarize(tmp_path)
    write_markdown(per_setting(gpt2_sweep.load(tmp_path)), tmp_path / "before.md")
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith((tmp_path / "before.md").read_text(encoding="utf-8"))
    rows = pooled_rows(tmp_path / "summary.md")[str(tiny_model_dir)]
    assert [row["Method"] for row in rows] == METHODS[1:]  # no references: no Human row
    assert all((row["n"], row["Prompts"]) == ("1", "1") and "[" not in row["Perplexity per sample [95% CI]"]
               for row in rows)
    points = line_points(gpt2_sweep.load(tmp_path), "perplexity")["temperature"]
    assert points.attrs["statistic"] == "median"


@pytest.mark.slow
def test_one_prompt_jobs_with_different_prompts_pool_over_their_prompts(tiny_model_dir, tmp_path):
    one_prompt_run(tiny_model_dir, tmp_path / "0", "The fox")
    one_prompt_run(tiny_model_dir, tmp_path / "1", "A sweep of")
    summarize(tmp_path)
    rows = pooled_rows(tmp_path / "summary.md")[str(tiny_model_dir)]
    assert [(row["n"], row["Prompts"]) for row in rows] == [("2", "2")] * 3
    assert all(" [" in row["Perplexity per sample [95% CI]"] for row in rows)


def test_the_line_plots_of_a_study_show_the_mean_and_its_interval(study_dir):
    samples = gpt2_sweep.load(study_dir)
    points = line_points(samples, "perplexity")["temperature"]
    assert points.attrs["statistic"] == "mean" and points.attrs["pooled"] == "n=8 per point: prompts and draws"
    assert list(points.temperature) == [0.0, 0.6, 1.2]
    assert list(points["count"]) == [8, 8, 8] and list(points["prompts"]) == [4, 4, 4]
    for point in points.itertuples():
        setting = samples[samples.temperature == point.temperature]
        interval = cluster_bootstrap(setting[["perplexity"]].to_numpy(float), setting.prompt_index.to_numpy())[0]
        assert (point.center, point.lower, point.upper) == pytest.approx((interval.mean, interval.low, interval.high))
    assert (study_dir / "plot_perplexity.png").is_file()


def test_load_keeps_only_the_per_token_lists_asked_for(study_dir):
    full, measured = gpt2_sweep.load(study_dir), load_samples(study_dir, tokens=("tokens", "token_logprobs"))
    assert set(full.columns) - set(measured.columns) == {"token_strings", "token_kept"}
    assert full.drop(columns=["token_strings", "token_kept"]).equals(measured)


@pytest.mark.slow
def test_repetition_drops_the_stop_token_a_study_names_and_the_table_says_where_it_is_unknown(
        tiny_model_dir, tokenizer, prompt_file, tmp_path):
    run_sweep(study_config(tiny_model_dir, prompt_file, "prompt_set.limit=2", "stop_at_eos=true"), tmp_path / "study")
    assert json.loads((tmp_path / "study" / "samples.json").read_text())["metadata"]["stop_token_id"] == \
        tokenizer.eos_token_id
    summarize(tmp_path / "study")
    one_prompt_run(tiny_model_dir, tmp_path / "one", "The fox", "stop_at_eos=true")
    summarize(tmp_path / "one")
    unknown = "Runs with stop_at_eos whose artifact does not name the stop token"
    assert unknown not in (tmp_path / "study" / "summary.md").read_text()
    assert unknown in (tmp_path / "one" / "summary.md").read_text()


def test_a_huge_single_run_writes_its_page_without_the_tokens_and_says_so(tiny_model_dir, tmp_path, monkeypatch):
    """The run's own report.html keeps to the size the summary keeps to: above it, no per-token lists."""
    import gpt2_sweep.analysis.report as report

    loaded = []
    load_samples = report.load_samples
    monkeypatch.setattr(report, "load_samples", lambda *a, **k: loaded.append(k.get("tokens")) or load_samples(*a, **k))
    monkeypatch.setattr(pooled, "MEASURED_ARTIFACT_BYTES", 0)
    one_prompt_run(tiny_model_dir, tmp_path / "huge", "The fox")
    assert loaded == [()]
    assert "The tokens are left out: the artifacts exceed" in (tmp_path / "huge" / "report.html").read_text()
    monkeypatch.undo()
    loaded.clear()
    monkeypatch.setattr(report, "load_samples", lambda *a, **k: loaded.append(k.get("tokens")) or load_samples(*a, **k))
    one_prompt_run(tiny_model_dir, tmp_path / "small", "The fox")
    assert loaded and loaded[0] != ()
    assert "The tokens are left out" not in (tmp_path / "small" / "report.html").read_text()
