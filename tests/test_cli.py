"""run.py as users run it, in a subprocess: exit codes, the artifact and the console, a multirun, one
line on stderr for bad input, what is imported before it is found, and what stays on disk. Most
behaviour is tested in-process (test_runs.py, test_bad_input.py); these are the real command lines."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, artifact, compose_config, run_app, run_cli
from gpt2_sweep.decoding.sampling import shared_uniforms
from gpt2_sweep.analysis.summary import METRICS
from gpt2_sweep.runner.sweep import run_sweep

PROMPT = 'Émoji 🦊 "quoted" 日本語'
ORIGINAL_METADATA = {"model_name", "num_samples", "max_length", "nucleus", "temperatures", "prompt", "p_values"}
ORIGINAL_SAMPLE = {"nucleus", "temperature", "text"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def without_time(document):
    return {**document, "metadata": {k: v for k, v in document["metadata"].items() if k != "created"}}


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory, tiny_model_dir):
    """One paired sweep with both schedules on, a prompt in several scripts, and output_json."""
    directory = tmp_path_factory.mktemp("run")
    result = run_cli(f"model.name={tiny_model_dir}", "sampler=both", "num_samples=3", "max_length=16",
                     f"prompt='{PROMPT}'", f"output_json={directory / 'copy' / 'results.json'}",
                     f"hydra.run.dir={directory}")
    assert result.returncode == 0, result.stderr
    return directory, result


def test_artifact_keeps_the_original_keys_and_adds_the_new_ones(sweep_run, tokenizer):
    directory, _ = sweep_run
    document = artifact(directory)
    metadata = document["metadata"]
    assert ORIGINAL_METADATA <= set(metadata)
    assert {"seed", "config", "versions", "device", "dtype", "batch_size"} <= set(metadata)
    assert metadata["num_samples"] == 3 and metadata["max_length"] == 16
    assert metadata["nucleus"] is True and metadata["temperatures"] is True
    assert metadata["prompt"] == PROMPT and metadata["seed"] == 0
    assert metadata["p_values"] == shared_uniforms(0, 15).tolist()
    assert (metadata["device"], metadata["dtype"]) == ("cpu", "float32")
    assert metadata["config"]["sampler"]["temperature"] is True
    assert metadata["versions"]["torch"] == torch.__version__
    prompt_ids = tokenizer.encode(PROMPT)
    assert [(s["temperature"], s["nucleus"]) for s in document["texts"]] == [(0.0, 0.0), (0.6, 0.5), (1.2, 1.0)]
    for sample in document["texts"]:
        assert ORIGINAL_SAMPLE | {"tokens", "prompt_tokens", "continuation"} <= set(sample)
        assert len(sample["tokens"]) == 16 and sample["tokens"][:len(prompt_ids)] == prompt_ids
        assert sample["prompt_tokens"] == len(prompt_ids)
        assert sample["text"] == tokenizer.decode(sample["tokens"], skip_special_tokens=True)
        assert sample["continuation"] == tokenizer.decode(sample["tokens"][len(prompt_ids):],
                                                          skip_special_tokens=True)
        assert sample["text"].startswith(PROMPT)


def test_output_json_gets_the_same_artifact_and_the_console_shows_the_samples(sweep_run):
    directory, result = sweep_run
    assert artifact(directory) == json.loads((directory / "copy" / "results.json").read_text(encoding="utf-8"))
    for sample in artifact(directory)["texts"]:
        assert sample["text"] in result.stdout
    assert str(directory / "samples.json") in result.stdout.splitlines()[-1]
    assert "Both sweeps are on" in result.stdout + result.stderr
    assert not list(directory.glob(".samples.json*"))  # no temporary file left behind


def test_same_seed_same_artifact_other_batch_size_same_samples(sweep_run, tiny_model_dir, tmp_path):
    directory, _ = sweep_run
    run_sweep(compose_config(f"model.name={tiny_model_dir}", "sampler=both", "num_samples=3", "max_length=16",
                             f"prompt='{PROMPT}'", f"output_json={tmp_path / 'copy' / 'results.json'}",
                             "batch_size=1"), tmp_path)
    first, second = artifact(directory), artifact(tmp_path)
    assert second["metadata"]["batch_size"] == 1 and first["metadata"]["batch_size"] == 3
    assert first["texts"] == second["texts"]
    for document in (first, second):
        document["metadata"].pop("batch_size")
        document["metadata"].pop("overrides")
        document["metadata"]["config"].pop("batch_size")
        document["metadata"]["config"].pop("output_json")
    assert without_time(first) == without_time(second)


@pytest.mark.slow
def test_a_multirun_writes_one_artifact_per_job_and_their_summary(tiny_model_dir, tmp_path):
    result = run_cli("-m", f"model.name={tiny_model_dir}", "sampler=temperature,nucleus", "num_samples=3",
                     "max_length=12", "prompt=The fox,A sweep", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    settings = {}
    for job in jobs:
        document = artifact(job)
        sampler = document["metadata"]["config"]["sampler"]
        settings[(sampler["temperature"], document["metadata"]["prompt"])] = [
            (s["temperature"], s["nucleus"]) for s in document["texts"]]
    assert settings == {(True, prompt): [(0.0, 1.0), (0.6, 1.0), (1.2, 1.0)] for prompt in ("The fox", "A sweep")} | {
        (False, prompt): [(1.0, 0.0), (1.0, 0.5), (1.0, 1.0)] for prompt in ("The fox", "A sweep")}
    rows = read_csv(tmp_path / "summary.csv")
    assert len(rows) == 4 * 3
    assert {row["prompt"] for row in rows} == {"The fox", "A sweep"}
    assert all(row["perplexity"] and float(row["perplexity"]) > 1 for row in rows)
    assert "sampler=temperature" in rows[0]["overrides"]
    table = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| model | prompt | temperature | nucleus | samples |" in table
    means = table.split("## Pooled over prompts and draws")[0]  # the pooled tables follow
    assert means.count("\n| ") == 1 + 2 * 6  # header, 2 prompts x 6 distinct (temperature, nucleus)
    for metric in METRICS:
        assert (tmp_path / f"plot_{metric}.png").read_bytes().startswith(PNG_MAGIC)
    assert f"Summary of 12 samples from jobs 0-3 written to {tmp_path}" in result.stdout


@pytest.mark.slow
def test_runs_started_together_get_their_own_dirs(tiny_model_dir, tmp_path):
    command = [sys.executable, str(REPO / "run.py"), f"model.name={tiny_model_dir}", "max_length=6"]
    processes = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in processes)
    artifacts = list((tmp_path / "outputs" / "runs").glob("*/samples.json"))
    assert len(artifacts) == 2


def test_help_says_what_the_tool_does_its_options_groups_and_examples():
    result = run_cli("--help")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    page = result.stdout
    assert page.startswith("gpt2_sweep: controlled sampling sweeps") and "powered by Hydra" not in page
    for key in compose_config():  # every option, with its meaning
        assert f"\n  {key}" in page, key
    assert "samples in the sweep" in page and "tokens per sample, the prompt's included" in page
    assert "model: distilgpt2, gpt2, gpt2-large, gpt2-medium, gpt2-xl, smollm2" in page  # the groups
    assert "sampler: both, default, min_p, nucleus, temperature, top_k" in page
    intro = page[:page.index("Usage:")]
    assert all(axis in intro for axis in ("temperature", "nucleus", "top_k", "min_p")), intro
    assert page.count("\n  python run.py ") >= 4 and "python run.py -m " in page  # usage and examples
    assert "num_samples: 4" in page  # the composed config


CLI_REFUSALS = {
    "a typo": (["num_sample=4"], "error: unknown key num_sample: did you mean num_samples?"),
    "an unquoted comma": (["prompt=Once upon a time, in a village"],
                          "error: prompt=Once upon a time, in a village holds a comma: quote the value to use it "
                          "as text, e.g. prompt=\"'Once upon a time, in a village'\""),
    "an appended key": (["+foo=1"], "error: unknown key foo: the run does not read it"),
    "an appended key in a multirun": (["-m", "+foo=1", "seed=0,1"], "error: unknown key foo"),
    "output_json in a multirun": (["-m", "seed=0,1", "output_json=out.json"],
                                  "error: output_json='out.json' is for single runs"),
    "a per-job output_json in a multirun": (["-m", "seed=0,1", "output_json=out_${hydra:job.num}.json"],
                                            "error: output_json='out_${hydra:job.num}.json' is for single runs"),
    "previewing a multirun": (["-m", "--cfg", "job", "+experiment=batch_study"],
                              "error: --cfg cannot preview a multirun (-m): drop -m"),
    "previewing a bad value": (["--cfg", "job", "num_samples=0"], "error: num_samples=0 is not allowed"),
}


@pytest.mark.parametrize("overrides, line", CLI_REFUSALS.values(), ids=CLI_REFUSALS.keys())
def test_a_refused_command_line_is_one_line_exit_two_no_traceback_and_no_dir(tiny_model_dir, tmp_path,
                                                                              overrides, line):
    flags = [o for o in overrides if o.startswith("-") or o == "job"]
    result = run_cli(*flags, f"model.name={tiny_model_dir}", "max_length=8", *(o for o in overrides if o not in flags),
                     f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[0].startswith(line) and len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "out.json").exists()
    assert not (tmp_path / "run").exists()


def test_a_refused_run_leaves_no_run_dir_and_never_touches_an_earlier_one(tiny_model_dir, tmp_path, monkeypatch):
    refused = run_cli(f"model.name={tiny_model_dir}", "num_samples=0", cwd=tmp_path)
    assert refused.returncode == 2 and "num_samples=0" in refused.stderr, refused.stderr
    assert list(tmp_path.rglob("*")) == []
    monkeypatch.chdir(tmp_path)
    refused = run_app(f"model.name={tiny_model_dir}", "max_length=65")  # found after the imports
    assert refused.returncode == 2 and refused.stderr.startswith("error: max_length=65"), refused.stderr
    assert len(refused.stderr.splitlines()) == 1 and "Traceback" not in refused.stdout
    assert list(tmp_path.rglob("*")) == []
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "samples.json").write_text("{}")
    refused = run_cli(f"model.name={tiny_model_dir}", "num_samples=0", f"hydra.run.dir={earlier}", cwd=tmp_path)
    assert refused.returncode == 2
    assert (earlier / "samples.json").read_text() == "{}" and (earlier / "run.log").exists()


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_gives_the_single_process_artifact(sweep_run, tiny_model_dir, tmp_path):
    directory, _ = sweep_run
    result = run_cli(f"model.name={tiny_model_dir}", "sampler=both", "num_samples=3", "max_length=16",
                     f"prompt='{PROMPT}'", "devices=ddp", "devices.accelerator=cpu", "devices.ids=2",
                     "batch_size=1", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert artifact(tmp_path)["texts"] == artifact(directory)["texts"]
    assert artifact(tmp_path)["metadata"]["devices"] == 2
    assert not (tmp_path / ".shards").exists()
    console = result.stdout + result.stderr  # no Lightning banners, no library warnings, from any rank
    for noise in ("available:", "Initializing distributed", "distributed_backend", "treespec", "Warning"):
        assert noise not in console, console


EARLY_REFUSALS = ["num_samples=0", "devices.precision=8-true", "output_json=/proc/x/y.json", "+foo=1"]


@pytest.mark.parametrize("bad", EARLY_REFUSALS)
def test_bad_values_are_found_before_torch_transformers_and_lightning_are_imported(tmp_path, bad):
    """They take seconds to import; what needs neither them nor the model is checked first."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['run.py', {bad!r}, 'hydra.run.dir={tmp_path}']\n"
            "try:\n"
            "    runpy.run_path('run.py', run_name='__main__')\n"
            "except SystemExit as end:\n"
            "    print(end.code, sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'lightning'}))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "2 []", result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1, result.stderr


def test_the_installed_package_and_its_commands_work_from_any_directory(tmp_path):
    """`make setup` installs the package (pip install -e .): its commands need no PYTHONPATH and no cwd."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    where = subprocess.run([sys.executable, "-c", "import gpt2_sweep; print(gpt2_sweep.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).parent == REPO / "gpt2_sweep", where.stdout  # this checkout, editable
    module = subprocess.run([sys.executable, "-m", "gpt2_sweep.summarize", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert module.returncode == 0 and "DIR" in module.stdout, module.stderr
    scripts = Path(sys.executable).parent
    summarize = subprocess.run([scripts / "gpt2-sweep-summarize", str(tmp_path / "missing")], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=60)
    assert summarize.returncode == 2 and summarize.stderr.startswith("error: no such directory"), summarize.stderr
    refused = subprocess.run([scripts / "gpt2-sweep", "num_samples=0"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.startswith("error: num_samples=0"), refused.stderr
    assert list(tmp_path.iterdir()) == []
