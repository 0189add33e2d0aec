"""run.py as users run it: overrides on the command line, a subprocess, the artifact on disk."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO, compose_config, run_cli
from gpt2_sweep.sampling import shared_uniforms

PROMPT = 'Émoji 🦊 "quoted" 日本語'
ORIGINAL_METADATA = {"model_name", "num_samples", "max_length", "nucleus", "temperatures", "prompt", "p_values"}
ORIGINAL_SAMPLE = {"nucleus", "temperature", "text"}


def artifact(directory):
    return json.loads((directory / "samples.json").read_text(encoding="utf-8"))


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
    again = run_cli(f"model.name={tiny_model_dir}", "sampler=both", "num_samples=3", "max_length=16",
                    f"prompt='{PROMPT}'", f"output_json={tmp_path / 'copy' / 'results.json'}",
                    "batch_size=1", f"hydra.run.dir={tmp_path}")
    assert again.returncode == 0, again.stderr
    first, second = artifact(directory), artifact(tmp_path)
    assert second["metadata"]["batch_size"] == 1 and first["metadata"]["batch_size"] == 3
    assert first["texts"] == second["texts"]
    for document in (first, second):
        document["metadata"].pop("batch_size")
        document["metadata"].pop("overrides")
        document["metadata"]["config"].pop("batch_size")
        document["metadata"]["config"].pop("output_json")
    assert without_time(first) == without_time(second)


def test_seed_changes_the_shared_uniforms_and_the_text(tiny_model_dir, tmp_path):
    runs = {}
    for seed in (0, 1):
        result = run_cli(f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=2",
                         "max_length=24", f"seed={seed}", f"hydra.run.dir={tmp_path / str(seed)}")
        assert result.returncode == 0, result.stderr
        runs[seed] = artifact(tmp_path / str(seed))
    assert runs[0]["metadata"]["p_values"] != runs[1]["metadata"]["p_values"]
    assert runs[1]["metadata"]["p_values"] == shared_uniforms(1, 23).tolist()
    assert [s["tokens"] for s in runs[0]["texts"]] != [s["tokens"] for s in runs[1]["texts"]]
    assert runs[0]["texts"][0]["tokens"][0] == runs[0]["texts"][0]["prompt_tokens"] - 1 + 0  # BOS id 0


def test_multirun_writes_one_artifact_per_job(tiny_model_dir, tmp_path):
    result = run_cli("-m", f"model.name={tiny_model_dir}", "sampler.temperature=true,false",
                     "sampler.schedule=paired,grid", "num_samples=2", "max_length=10",
                     f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    counts = {}
    for job in jobs:
        document = artifact(job)
        sampler = document["metadata"]["config"]["sampler"]
        counts[(sampler["temperature"], sampler["schedule"])] = len(document["texts"])
    assert counts == {(True, "paired"): 2, (True, "grid"): 2, (False, "paired"): 2, (False, "grid"): 2}
    assert "the 2 samples all use temperature 1.0 and nucleus 1.0" in result.stdout + result.stderr


def test_runs_started_together_get_their_own_dirs(tiny_model_dir, tmp_path):
    command = [sys.executable, str(REPO / "run.py"), f"model.name={tiny_model_dir}", "max_length=6"]
    processes = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in processes)
    artifacts = list((tmp_path / "outputs" / "runs").glob("*/samples.json"))
    assert len(artifacts) == 2


BAD_INPUTS = [
    (["num_samples=0"], "num_samples=0"),
    (["num_samples=two"], "num_samples='two'"),
    (["max_length=3", "prompt='The quick brown fox jumps'"], "max_length=3"),
    (["max_length=65"], "max_length=65"),
    (["batch_size=0"], "batch_size=0"),
    (["sampler.temperature_range=[-0.5,1.0]"], "sampler.temperature_range"),
    (["sampler.nucleus_range=[0.0,1.5]"], "sampler.nucleus_range"),
    (["sampler.temperature_range=0.5"], "sampler.temperature_range=0.5"),
    (["seed=18446744073709551616"], "seed=18446744073709551616"),
    (["model.trust_remote_code='false'"], "model.trust_remote_code='false'"),
    (["sampler.temperature=maybe"], "sampler.temperature='maybe'"),
    (["sampler.nucleus=1"], "sampler.nucleus=1"),
    (["sampler.schedule=diagonal"], "sampler.schedule='diagonal'"),
    (["devices=gpu"], "devices.accelerator=gpu"),
    (["devices.ids=[0,1]"], "devices.ids"),
    (["devices.strategy=fsdp"], "devices.strategy"),
    (["devices.precision=8-true"], "devices.precision='8-true'"),
    (["output_json=/etc/hostname/results.json"], "output_json="),
    (["model=gpt5"], "model=gpt5"),
    (["nonsense_key=1"], "nonsense_key"),
]


@pytest.mark.parametrize("overrides, named", BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_two_and_no_artifact(tiny_model_dir, tmp_path, overrides, named):
    result = run_cli(f"model.name={tiny_model_dir}", *overrides, f"hydra.run.dir={tmp_path}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "samples.json").exists()


def test_help_says_what_the_tool_does_its_options_groups_and_examples():
    result = run_cli("--help")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    page = result.stdout
    assert page.startswith("gpt2_sweep: controlled sampling sweeps") and "powered by Hydra" not in page
    for key in compose_config():  # every option, with its meaning
        assert f"\n  {key}" in page, key
    assert "samples in the sweep" in page and "tokens per sample, the prompt's included" in page
    assert "model: distilgpt2, gpt2, gpt2-large, gpt2-medium, gpt2-xl, smollm2" in page  # the groups
    assert "sampler: both, default, nucleus, temperature" in page
    assert page.count("\n  python run.py ") >= 4 and "python run.py -m " in page  # usage and examples
    assert "num_samples: 4" in page  # the composed config


CLI_REFUSALS = {
    "a typo": (["num_sample=4"], "error: unknown key num_sample: did you mean num_samples?"),
    "an appended key": (["+foo=1"], "error: unknown key foo: the run does not read it"),
    "an appended key in a multirun": (["-m", "+foo=1", "seed=0,1"], "error: unknown key foo"),
    "output_json in a multirun": (["-m", "seed=0,1", "output_json=out.json"],
                                  "error: output_json='out.json' is for single runs"),
    "previewing a multirun": (["-m", "--cfg", "job", "+experiment=batch_study"],
                              "error: --cfg cannot preview a multirun (-m): drop -m"),
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


def test_a_refused_run_leaves_no_run_dir_and_never_touches_an_earlier_one(tiny_model_dir, tmp_path):
    for refusal in ("num_samples=0", "max_length=65"):  # found before the imports, after the model loads
        refused = run_cli(f"model.name={tiny_model_dir}", refusal, cwd=tmp_path)
        assert refused.returncode == 2 and refusal in refused.stderr, refused.stderr
        assert list(tmp_path.rglob("*")) == []
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "samples.json").write_text("{}")
    refused = run_cli(f"model.name={tiny_model_dir}", "num_samples=0", f"hydra.run.dir={earlier}", cwd=tmp_path)
    assert refused.returncode == 2
    assert (earlier / "samples.json").read_text() == "{}" and (earlier / "run.log").exists()


@pytest.mark.parametrize("name, named", [("/no/such/dir", "/no/such/dir"), ("unknown-org/unknown-model", "smollm2")])
def test_unknown_model_is_one_line(tmp_path, name, named):
    result = run_cli(f"model.name={name}", f"hydra.run.dir={tmp_path}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and named in lines[0], result.stderr
    assert not (tmp_path / "samples.json").exists()


def test_a_directory_without_a_model_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli(f"model.name={tmp_path / 'empty'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "config.json" in result.stderr


def test_pickle_checkpoints_load_only_when_allowed(tiny_model, tokenizer, tmp_path):
    model_dir = tmp_path / "pickled"
    model_dir.mkdir()
    tiny_model.config.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    torch.save(tiny_model.state_dict(), model_dir / "pytorch_model.bin")
    refused = run_cli(f"model.name={model_dir}", "max_length=8", f"hydra.run.dir={tmp_path / 'a'}")
    assert refused.returncode == 2 and "model.allow_pickle=true" in refused.stderr, refused.stderr
    assert not (tmp_path / "a" / "samples.json").exists()
    allowed = run_cli(f"model.name={model_dir}", "max_length=8", "model.allow_pickle=true",
                      f"hydra.run.dir={tmp_path / 'b'}")
    assert allowed.returncode == 0, allowed.stderr
    assert len(artifact(tmp_path / "b")["texts"][0]["tokens"]) == 8


def test_ddp_on_two_cpu_processes_gives_the_single_process_artifact(sweep_run, tiny_model_dir, tmp_path):
    directory, _ = sweep_run
    result = run_cli(f"model.name={tiny_model_dir}", "sampler=both", "num_samples=3", "max_length=16",
                     f"prompt='{PROMPT}'", "devices=ddp", "devices.accelerator=cpu", "devices.ids=2",
                     "batch_size=1", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert artifact(tmp_path)["texts"] == artifact(directory)["texts"]
    assert artifact(tmp_path)["metadata"]["devices"] == 2
    assert not list(tmp_path.glob(".ranks-*"))


EARLY_REFUSALS = ["num_samples=0", "sampler.nucleus_range=[0.0,2.0]", "devices.precision=8-true",
                  "devices.ids=[0,0]", "output_json=/proc/x/y.json", "+foo=1"]


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
