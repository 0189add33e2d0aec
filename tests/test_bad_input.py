"""Bad input, in-process: the UsageError names the value and what is allowed, and nothing is written."""
import pytest
from hydra.errors import HydraException

import gpt2_sweep.runner.sweep
from conftest import compose_config
from gpt2_sweep.artifact import check_writable
from gpt2_sweep.runner.checks import check_before_loading
from gpt2_sweep.runner.cli import one_line
from gpt2_sweep.errors import UsageError
from gpt2_sweep.runner.keys import check_keys
from gpt2_sweep.runner.sweep import run_sweep
from gpt2_sweep.runner.trackers import check_logger_keys


@pytest.fixture
def no_model_loading(monkeypatch):
    """Bad input must be found before the model loads."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was found")
    monkeypatch.setattr(gpt2_sweep.runner.sweep, "load_model", refuse)


BAD_INPUTS = [
    (["num_samples=0"], "num_samples=0"),
    (["num_samples=two"], "num_samples='two'"),
    (["max_length=3", "prompt='The quick brown fox jumps'"], "max_length=3"),
    (["max_length=65"], "max_length=65"),
    (["prompt='" + "The quick brown fox " * 30 + "'"], "the model takes at most 64"),
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
    (["devices=cpu", "devices.accelerator=gpu"], "devices.accelerator=gpu"),
    (["devices.ids=[0,1]"], "devices.ids"),
    (["devices.strategy=fsdp"], "devices.strategy"),
    (["devices.precision=8-true"], "devices.precision='8-true'"),
    (["output_json=/etc/hostname/results.json"], "output_json="),
    (["model=gpt5"], "model=gpt5"),
    (["nonsense_key=1"], "nonsense_key"),
    (["prompt=bell\x07 x"], "prompt=bell\\x07 x): quote"),  # an unquoted control character, shown
    (["runtime.sampler=fastest"], "runtime.sampler='fastest' is not allowed: one of auto, sort, search, triton"),
]


def refusal(tiny_model_dir, run_dir, *overrides) -> str:
    """The one line `python run.py OVERRIDES` ends with: Hydra's refusal, or the run's UsageError."""
    try:
        cfg = compose_config(f"model.name={tiny_model_dir}", *overrides)
    except HydraException as error:
        return one_line(error)
    with pytest.raises(UsageError) as refused:
        run_sweep(cfg, run_dir)
    return str(refused.value)


@pytest.mark.parametrize("overrides, named", BAD_INPUTS, ids=[" ".join(o)[:40] for o, _ in BAD_INPUTS])
def test_bad_input_is_one_line_naming_it_before_the_model_loads_and_no_artifact(
        tiny_model_dir, tmp_path, no_model_loading, overrides, named):
    line = refusal(tiny_model_dir, tmp_path, *overrides)
    assert named in line and "\n" not in line, line
    assert not (tmp_path / "samples.json").exists()


def test_the_triton_sampler_without_a_gpu_or_the_interpreter_is_refused_before_the_model_loads(
        tiny_model_dir, tmp_path, no_model_loading, monkeypatch):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU runs the kernel")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cfg = compose_config(f"model.name={tiny_model_dir}", "runtime.sampler=triton")
    for refuse in (check_before_loading, lambda cfg: run_sweep(cfg, tmp_path)):
        with pytest.raises(UsageError, match="runtime.sampler=triton needs") as refused:
            refuse(cfg)
        assert "TRITON_INTERPRET=1" in str(refused.value) and "auto, sort, search" in str(refused.value)
    assert not (tmp_path / "samples.json").exists()


@pytest.mark.parametrize("name, named", [("/no/such/dir", "/no/such/dir"),
                                         ("unknown-org/unknown-model", "model=smollm2 works offline")])
def test_an_unknown_model_is_one_line(tmp_path, no_model_loading, monkeypatch, name, named):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as the tests' subprocesses run
    with pytest.raises(UsageError, match=named):
        run_sweep(compose_config(f"model.name={name}"), tmp_path)
    assert not (tmp_path / "samples.json").exists()


def test_a_directory_without_a_model_is_refused(tmp_path, no_model_loading):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="config.json"):
        run_sweep(compose_config(f"model.name={tmp_path / 'empty'}"), tmp_path / "run")


@pytest.mark.parametrize("output_json, named", [
    ("/proc/x/y.json", "/proc/x"),                     # a parent that cannot be created
    ("/proc/self/no/such/y.json", "/proc/self/no"),
    ("/sys/x/y.json", "/sys/x"),
    ("/etc/hostname/results.json", "/etc/hostname is not a directory"),  # a file in the way
    ("/etc/hostname/a/b.json", "/etc/hostname is not a directory"),
])
def test_an_output_json_that_cannot_be_written_is_refused_before_the_model_loads(
        tiny_model_dir, tmp_path, no_model_loading, output_json, named):
    cfg = compose_config(f"model.name={tiny_model_dir}", "max_length=8", f"output_json={output_json}")
    with pytest.raises(UsageError, match="output_json=") as refused:
        run_sweep(cfg, tmp_path)
    assert named in str(refused.value) and "cannot be written" in str(refused.value)
    assert not (tmp_path / "samples.json").exists()


def test_checking_a_writable_path_leaves_no_trace(tmp_path):
    check_writable(tmp_path / "a" / "b" / "c.json", "output_json")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a").mkdir()
    check_writable(tmp_path / "a" / "b" / "c.json", "output_json")
    assert [p.name for p in tmp_path.rglob("*")] == ["a"]
    with pytest.raises(UsageError, match="is a directory"):
        check_writable(tmp_path / "a", "output_json")


def composition_error(*overrides) -> str:
    """The one line a command line with these overrides ends with, when Hydra refuses it."""
    with pytest.raises(HydraException) as refused:
        compose_config(*overrides)
    return one_line(refused.value)


def test_an_unquoted_comma_shows_how_to_quote_it():
    line = composition_error("prompt=Once upon a time, in a village")
    assert "prompt=Once upon a time, in a village" in line
    assert """prompt="'Once upon a time, in a village'\"""" in line and "-m" in line
    assert "\n" not in line


@pytest.mark.parametrize("overrides, message", [
    (["num_sample=4"], "unknown key num_sample: did you mean num_samples?"),
    (["model.nme=gpt2"], "unknown key model.nme: did you mean model.name?"),
])
def test_a_mistyped_key_suggests_the_key_not_appending_it(overrides, message):
    line = composition_error(*overrides)
    assert line.startswith(message) and "+" not in line


@pytest.mark.parametrize("overrides, message", [
    (["+num_sample=4"], "unknown key num_sample: did you mean num_samples?"),
    (["+foo=1"], "unknown key foo: the run does not read it"),
    (["+sampler.tmperature=true"], "unknown key sampler.tmperature: did you mean sampler.temperature?"),
    (["+devices.x.y=1"], "unknown key devices.x: the run does not read it"),
    (["+foo=1", "+bar=2"], "unknown keys bar (the run does not read it), foo (the run does not read it)"),
])
def test_an_appended_key_the_run_does_not_read_is_refused(overrides, message):
    with pytest.raises(UsageError) as refused:
        check_keys(compose_config(*overrides))
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize("overrides", [[], ["+experiment=batch_study"], ["model=smollm2", "sampler=both"],
                                       ["++num_samples=3"], ["hydra.job.name=other"]])
def test_groups_experiments_and_hydra_keys_are_not_unknown(overrides):
    check_keys(compose_config(*overrides, hydra=True))


def test_output_json_is_refused_in_each_job_of_a_multirun_too():
    cfg = compose_config("output_json=out.json")
    check_before_loading(cfg, multirun=False)
    with pytest.raises(UsageError, match="output_json='out.json' is for single runs"):
        check_before_loading(cfg, multirun=True)


def test_an_existing_output_json_is_replaced_only_by_its_own_config_or_with_overwrite(tiny_model_dir, tmp_path,
                                                                                      monkeypatch):
    keep = tmp_path / "keep.json"
    keep.write_text("my notes\n")
    overrides = [f"model.name={tiny_model_dir}", "max_length=6", "num_samples=2", f"output_json={keep}"]
    loads = gpt2_sweep.runner.sweep.load_model
    monkeypatch.setattr(gpt2_sweep.runner.sweep, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    for refuse in (lambda cfg: check_before_loading(cfg), lambda cfg: run_sweep(cfg, tmp_path / "a")):
        with pytest.raises(UsageError) as refused:
            refuse(compose_config(*overrides))
        assert str(refused.value).startswith(f"output_json={str(keep)!r} exists and is not an artifact of this run: "
                                             "overwrite=true replaces it")
    assert keep.read_text() == "my notes\n" and not (tmp_path / "a").exists()
    monkeypatch.setattr(gpt2_sweep.runner.sweep, "load_model", loads)
    run_sweep(compose_config(*overrides, "overwrite=true"), tmp_path / "b")
    assert keep.read_bytes() == (tmp_path / "b" / "samples.json").read_bytes()
    run_sweep(compose_config(*overrides), tmp_path / "c")  # the artifact of the same config: a rerun
    with pytest.raises(UsageError, match=r"holds the samples of another config \(max_length: 6 -> 7\)"):
        check_before_loading(compose_config(*overrides[:-3], "max_length=7", "num_samples=2", f"output_json={keep}"))


def test_a_cpu_run_that_cannot_fit_in_memory_is_refused_before_the_model_loads(tiny_model_dir, tmp_path,
                                                                             no_model_loading, monkeypatch):
    overrides = [f"model.name={tiny_model_dir}", "sampler=both", "sampler.schedule=grid", "num_samples=100",
                 "max_length=50"]  # 10,000 samples: each row's buffers at once need about 0.3 GiB
    monkeypatch.setattr(gpt2_sweep.runner.sweep, "available_memory", lambda: 2**28)  # 256 MiB
    with pytest.raises(UsageError) as refused:
        run_sweep(compose_config(*overrides, "batch_size=10000"), tmp_path)
    line = str(refused.value)
    assert line.startswith("10,000 samples of 49 new tokens (batch_size=10000) need about ") and "\n" not in line
    assert "this machine has 0.2 GiB available: batch_size=" in line and " fits " in line, line
    fitting = int(line.split("available: batch_size=")[1].split()[0].replace(",", ""))
    assert 1 <= fitting < 10_000
    monkeypatch.setattr(gpt2_sweep.runner.sweep, "available_memory", lambda: 2**20)  # 1 MiB: not the results
    with pytest.raises(UsageError, match=r"^10,000 samples of 49 new tokens \(batch_size=null: 128 at once\) need "
                                         r".* their results alone \(.* GiB\) do not fit: fewer samples"):
        run_sweep(compose_config(*overrides), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_fits_says_how_many_samples_it_generates(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gpt2_sweep.runner.sweep, "available_memory", lambda: 2**30)
    run_sweep(compose_config(f"model.name={tiny_model_dir}", "sampler=both", "sampler.schedule=grid",
                             "num_samples=2", "max_length=6", "prompt=The fox"), tmp_path)
    printed = capsys.readouterr().out
    assert printed.startswith("Generating 4 samples of ") and " new tokens each ..." in printed.splitlines()[0]


@pytest.mark.parametrize("overrides, line", [
    (["logger=csv", "+logger.verison=v1"], "unknown key logger.verison: did you mean logger.version? (CSVLogger "
                                            "takes save_dir, name, version, prefix, flush_logs_every_n_steps)"),
    (["logger=mlflow", "+logger.nosuch=1"], "unknown key logger.nosuch: MLFlowLogger takes experiment_name, "
                                            "run_name, tracking_uri, tags, "),
    (["logger=csv", "logger._target_=lightning.pytorch.loggers.CSVLoger"],
     "logger._target_='lightning.pytorch.loggers.CSVLoger' cannot be imported: "),
], ids=["a typo", "a key the class does not take", "a class that cannot be imported"])
def test_a_logger_key_its_class_does_not_take_is_refused_before_the_model_loads(tiny_model_dir, tmp_path,
                                                                               no_model_loading, overrides, line):
    with pytest.raises(UsageError) as refused:
        run_sweep(compose_config(f"model.name={tiny_model_dir}", *overrides), tmp_path / "run")
    assert str(refused.value).startswith(line) and "\n" not in str(refused.value), refused.value
    assert list(tmp_path.iterdir()) == []


def test_a_logger_class_that_takes_any_keyword_takes_any_key():
    check_logger_keys(compose_config("logger=tensorboard", "+logger.flush_secs=30"))  # SummaryWriter's
