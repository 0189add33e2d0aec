"""Sweep summaries, rebuilt by python -m gpt2_sweep.summarize. (Those written at the end of a multirun:
test_cli.py, and test_reliability.py with failed jobs and reruns into the same dir.)"""
import csv
import json
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

import gpt2_sweep
import gpt2_sweep.analysis.summary
from conftest import REPO, compose_config, run_app
from gpt2_sweep.analysis.plots import grid_medians, has_grid, heatmap_panels, line_points
from gpt2_sweep.analysis.summary import summarize
from gpt2_sweep.analysis.tables import METRICS, per_setting, write_markdown
from gpt2_sweep.runner.sweep import run_sweep
from gpt2_sweep.summarize import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_summarize_rebuilds_any_dir_and_reads_older_artifacts(tmp_path, capsys):
    old = {"metadata": {"model_name": "gpt2", "num_samples": 2, "max_length": 5, "nucleus": False,
                        "temperatures": True, "prompt": None, "p_values": [0.1, 0.2, 0.3, 0.4]},
           "texts": [{"nucleus": 0.0, "temperature": 0.0, "text": "a"},
                     {"nucleus": 0.0, "temperature": 1.2, "text": "b"}]}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "samples.json").write_text(json.dumps(old))
    assert main([str(tmp_path)]) == 0
    assert f"Summary of 2 samples from job run written to {tmp_path}" in capsys.readouterr().out
    rows = read_csv(tmp_path / "summary.csv")
    assert [row["temperature"] for row in rows] == ["0.0", "1.2"]
    assert all(row[metric] == "" for row in rows for metric in METRICS)
    assert not list(tmp_path.glob("*.png"))  # no metric to plot: no empty plot file


def summarize_cli(*arguments):
    return subprocess.run([sys.executable, "-m", "gpt2_sweep.summarize", *map(str, arguments)], cwd=REPO,
                          capture_output=True, text=True)


def test_summarize_help_exits_zero_and_a_missing_dir_is_one_line(tmp_path):
    helped = summarize_cli("--help")
    assert helped.returncode == 0 and "DIR" in helped.stdout and helped.stderr == ""
    missing = summarize_cli(tmp_path / "nope")
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.strip().splitlines() == [f"error: no such directory: {tmp_path / 'nope'}"]


def test_the_batch_study_preset_sweeps_models_prompts_and_both_sweeps():
    cfg = compose_config("+experiment=batch_study", hydra=True)
    params = cfg.hydra.sweeper.params
    assert params.model.split(",") == ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"]
    assert params.sampler == "temperature,nucleus"
    assert len(params.prompt.split("','")) >= 3


def run_jobs(model_dir, directory, jobs):
    for job, overrides in jobs.items():
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"model.name={model_dir}", "max_length=10",
                                                            "prompt=The fox", "print_samples=0", *overrides])
        run_sweep(cfg, directory / job, overrides)


def test_a_grid_gets_heatmaps_of_its_shape_and_the_tables_their_new_columns(tiny_model_dir, tmp_path):
    grid = ["sampler=both", "sampler.schedule=grid", "num_samples=3"]
    run_jobs(tiny_model_dir, tmp_path, {"0": [*grid, "seed=0"], "1": [*grid, "seed=1"],
                                        "2": ["sampler=temperature", "num_samples=2"]})
    written = summarize(tmp_path)
    for metric in METRICS:
        assert (tmp_path / f"heatmap_{metric}.png").read_bytes().startswith(PNG_MAGIC)
        assert (tmp_path / f"plot_{metric}.png") in written and (tmp_path / f"heatmap_{metric}.png") in written

    medians = grid_medians(gpt2_sweep.load(tmp_path), "perplexity")
    assert (medians.row_axis, medians.column_axis) == ("temperature", "nucleus")
    assert (medians.row_values, medians.column_values) == ([0.0, 0.6, 1.2], [0.0, 0.5, 1.0])
    assert medians.medians.shape == (3, 3) and (medians.counts == 2).all()  # two seeds per cell
    run = gpt2_sweep.load(tmp_path / "0")
    greedy = list(run.perplexity[run.temperature == 0.0])
    assert medians.medians[0, 0] == greedy[0]  # both seeds' greedy samples share the prompt: same text

    rows = read_csv(tmp_path / "summary.csv")
    first = json.loads((tmp_path / "0" / "samples.json").read_text(encoding="utf-8"))["texts"][0]
    assert rows[0]["text"] == first["text"] and rows[0]["artifact"] == str(tmp_path / "0" / "samples.json")
    assert {"schedule", "diverges_from"} <= set(rows[0])


def test_summary_md_numbers_read_without_exponents(tmp_path):
    metrics = {metric: 0.5 for metric in METRICS} | {"perplexity": 49150.2, "logprob": -1234567.891}
    document = {"metadata": {"model_name": "gpt2", "prompt": "x", "temperatures": True, "nucleus": False},
                "texts": [{"temperature": 0.3333333, "nucleus": 1.0, "text": "a", "metrics": metrics}]}
    (tmp_path / "samples.json").write_text(json.dumps(document), encoding="utf-8")
    samples = gpt2_sweep.load(tmp_path)
    write_markdown(per_setting(samples), tmp_path / "summary.md")
    table = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| gpt2 | x | 0.333333 | 1 | 1 | 49,150.2 | -1,234,567.9 | 0.500 |" in table
    assert "e+" not in table and "e-" not in table
    assert not has_grid(samples)  # so no heatmaps


def markdown_rows(path):
    """summary.md's table of means per setting (its first) as dicts of cell text."""
    first = path.read_text(encoding="utf-8").split("## Pooled over prompts and draws")[0]
    lines = [line for line in first.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[1:]]


def test_settings_are_sorted_as_numbers(tiny_model_dir, tmp_path):
    run_jobs(tiny_model_dir, tmp_path, {"0": ["sampler.top_k=true", "num_samples=4"],
                                        "1": ["sampler=temperature", "sampler.temperature_range=[0.5,10]",
                                              "num_samples=3"]})
    summarize(tmp_path)
    rows = markdown_rows(tmp_path / "summary.md")
    assert [row["temperature"] for row in rows] == ["0.5", "1", "1", "1", "1", "5.25", "10"]
    assert [row["top_k"] for row in rows if row["temperature"] == "1"] == ["1", "34", "67", "100"]


@pytest.mark.slow
def test_every_swept_axis_gets_its_line_plots_and_no_figure_is_empty(tiny_model_dir, tmp_path, capsys):
    run_jobs(tiny_model_dir, tmp_path, {"0": ["sampler.top_k=true", "num_samples=3"],
                                        "1": ["sampler.min_p=true", "num_samples=3"],
                                        "2": ["sampler=both", "sampler.schedule=grid", "num_samples=2"]})
    capsys.readouterr()
    summarize(tmp_path)
    assert "(summary.csv, summary.md, 8 plots, 8 heatmaps, report.html)" in capsys.readouterr().out
    panels = line_points(gpt2_sweep.load(tmp_path), "perplexity")
    assert list(panels) == ["top_k", "min_p"]  # temperature and nucleus only in a grid: its heatmap
    assert list(panels["top_k"].top_k) == [1, 51, 100]  # 50.5 rounded half up and list(panels["min_p"].min_p) == [0.0, 0.15, 0.3]
    assert (panels["top_k"]["count"] == 1).all()

    grid_only = tmp_path / "grid"
    run_jobs(tiny_model_dir, grid_only, {"0": ["sampler=both", "sampler.schedule=grid", "num_samples=2"]})
    (grid_only / "plot_perplexity.png").write_bytes(PNG_MAGIC)  # an earlier summary's
    capsys.readouterr()
    written = summarize(grid_only)
    assert "(summary.csv, summary.md, 8 heatmaps, report.html)" in capsys.readouterr().out
    assert not list(grid_only.glob("plot_*.png")) and len(written) == 3 + 8 + 1


def test_a_grid_of_three_axes_gets_one_heatmap_panel_per_value_of_the_third(tiny_model_dir, tmp_path):
    grid = ["sampler=both", "sampler.top_k=true", "sampler.top_k_range=[1,20]", "sampler.schedule=grid",
            "num_samples=2"]
    run_jobs(tiny_model_dir, tmp_path, {"0": [*grid, "seed=0"], "1": [*grid, "seed=1"]})
    samples = gpt2_sweep.load(tmp_path)
    panels = heatmap_panels(samples, "perplexity")
    assert [panel.title.splitlines()[0].split(" | ")[1] for panel in panels] == ["top_k=1", "top_k=20"]
    for panel, top_k in zip(panels, (1, 20)):
        assert panel.title.splitlines()[1] == "n=2 per cell: seeds"
        assert (panel.grid.row_axis, panel.grid.column_axis) == ("temperature", "nucleus")
        assert (panel.grid.counts == 2).all()
        hottest = samples[(samples.top_k == top_k) & (samples.temperature == 1.2) & (samples.nucleus == 1.0)]
        assert panel.grid.medians[-1, -1] == hottest.perplexity.median()


def test_a_multirun_whose_summary_fails_says_so_and_exits_non_zero(tiny_model_dir, tmp_path, monkeypatch):
    def full_disk(*arguments):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(gpt2_sweep.analysis.summary, "write_markdown", full_disk)
    result = run_app("-m", f"model.name={tiny_model_dir}", "seed=0,1", "num_samples=1", "max_length=4",
                     f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 1
    assert "error: the sweep summary failed: OSError(28, 'No space left on device')" in result.stderr
    assert "error: job" not in result.stderr  # the jobs themselves succeeded and wrote their artifacts
    assert len(list(tmp_path.glob("*/samples.json"))) == 2


def test_prompts_of_the_same_text_are_still_different_prompts_in_a_title():
    """Two chapters of a book may open with the same sentence: a point over both is pooled over
    prompts (told apart by their index), not over 'repeated values'."""
    from gpt2_sweep.analysis.plots import pooled_over

    samples = pd.DataFrame({"temperature": [0.5] * 3, "prompt_index": [0, 1, 2],
                            "prompt": ["And the LORD spake", "And the LORD spake", "In the beginning"],
                            "draw": [0] * 3, "seed": [0] * 3, "job": ["."] * 3})
    assert pooled_over(samples, ["temperature"], "point") == "n=3 per point: prompts"
    repeated = pd.concat([samples, samples.iloc[:1]])  # one run's sample twice at one value: repeated
    assert pooled_over(repeated, ["temperature"], "point") == "n=4 per point: prompts and repeated values"


def test_the_page_of_an_artifact_with_tokens_but_no_prompt_length_shows_every_token(tmp_path):
    """A hand-made or foreign artifact: token ids without prompt_tokens, and the seed's keys alone."""
    document = {"metadata": {"model_name": "gpt2", "num_samples": 2, "max_length": 50, "nucleus": True,
                             "temperatures": True, "prompt": None},
                "texts": [{"nucleus": 0.0, "temperature": 0.0, "text": "a b", "tokens": [11, 12, 13]},
                          {"nucleus": 1.0, "temperature": 1.0, "text": "a c", "tokens": [11, 12, 14]}]}
    for job, texts in (("0", document["texts"]), ("1", [{k: v for k, v in text.items() if k != "tokens"}
                                                        for text in document["texts"]])):
        (tmp_path / job).mkdir()
        (tmp_path / job / "samples.json").write_text(json.dumps({**document, "texts": texts}))
    summarize(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "4 samples" in page  # before: a TypeError on int(None), and no page
