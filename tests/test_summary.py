"""Sweep summaries, rebuilt by python -m gpt2_sweep.summarize. (Those written at the end of a multirun:
test_cli.py, and test_reliability.py with failed jobs and reruns into the same dir.)"""
import csv
import json
import subprocess
import sys

from conftest import REPO, compose_config
from gpt2_sweep.summarize import METRICS, main


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
