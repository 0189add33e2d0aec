"""Sweep summaries, rebuilt by python -m gpt2_sweep.summarize. (Those written at the end of a multirun:
test_cli.py, and test_reliability.py with failed jobs and reruns into the same dir.)"""
import csv
import json
import subprocess
import sys

from hydra import compose, initialize_config_dir

import gpt2_sweep.summarize
from conftest import REPO, compose_config, run_app
from gpt2_sweep.summarize import (METRICS, averaged_per_setting, collect_rows, grid_medians, has_grid, main,
                                  summarize, write_markdown)
from gpt2_sweep.sweep import run_sweep

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
    assert (tmp_path / "plot_distinct_2.png").exists()


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

    medians = grid_medians(collect_rows(tmp_path), "perplexity")
    assert (medians.row_axis, medians.column_axis) == ("temperature", "nucleus")
    assert (medians.row_values, medians.column_values) == ([0.0, 0.6, 1.2], [0.0, 0.5, 1.0])
    assert medians.medians.shape == (3, 3) and (medians.counts == 2).all()  # two seeds per cell
    greedy = [row["perplexity"] for row in collect_rows(tmp_path / "0") if row["temperature"] == 0.0]
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
    rows = collect_rows(tmp_path)
    write_markdown(averaged_per_setting(rows), tmp_path / "summary.md")
    table = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| gpt2 | x | 0.333333 | 1 | 1 | 49,150.2 | -1,234,567.9 | 0.500 |" in table
    assert "e+" not in table and "e-" not in table
    assert not has_grid(rows)  # so no heatmaps


def test_a_multirun_whose_summary_fails_says_so_and_exits_non_zero(tiny_model_dir, tmp_path, monkeypatch):
    def full_disk(*arguments):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(gpt2_sweep.summarize, "write_markdown", full_disk)
    result = run_app("-m", f"model.name={tiny_model_dir}", "seed=0,1", "num_samples=1", "max_length=4",
                     f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 1
    assert "error: the sweep summary failed: OSError(28, 'No space left on device')" in result.stderr
    assert "error: job" not in result.stderr  # the jobs themselves succeeded and wrote their artifacts
    assert len(list(tmp_path.glob("*/samples.json"))) == 2
