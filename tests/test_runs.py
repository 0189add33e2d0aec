"""Whole runs in-process: the config composed as run.py composes it, then run_sweep, as run.py calls it."""
import logging

import pytest
import torch

import gpt2_sweep.runner.sweep
from conftest import artifact, compose_config, run_app
from gpt2_sweep.errors import UsageError
from gpt2_sweep.decoding.sampling import shared_uniforms
from gpt2_sweep.runner.schedules import BOTH_OFF_WARNING, BOTH_ON_PAIRED_WARNING
from gpt2_sweep.runner.sweep import run_sweep


def run(tmp_path, *overrides) -> dict:
    run_sweep(compose_config(*overrides), tmp_path)
    return artifact(tmp_path)


def test_both_sweeps_off_gives_num_samples_identical_samples_with_a_warning(tiny_model_dir, tmp_path, caplog):
    """As the original script did: `python run.py` writes 4 samples."""
    document = run(tmp_path, f"model.name={tiny_model_dir}", "max_length=12")
    assert document["metadata"]["num_samples"] == 4 and len(document["texts"]) == 4
    assert {(s["temperature"], s["nucleus"]) for s in document["texts"]} == {(1.0, 1.0)}
    assert len({tuple(s["tokens"]) for s in document["texts"]}) == 1
    assert BOTH_OFF_WARNING.format(num_samples=4) in caplog.text


def test_seed_changes_the_shared_uniforms_and_the_text(tiny_model_dir, tmp_path):
    runs = {seed: run(tmp_path / str(seed), f"model.name={tiny_model_dir}", "sampler=temperature",
                      "num_samples=2", "max_length=24", f"seed={seed}") for seed in (0, 1)}
    assert runs[0]["metadata"]["p_values"] != runs[1]["metadata"]["p_values"]
    assert runs[1]["metadata"]["p_values"] == shared_uniforms(1, 23).tolist()
    assert [s["tokens"] for s in runs[0]["texts"]] != [s["tokens"] for s in runs[1]["texts"]]
    assert runs[0]["texts"][0]["tokens"][0] == runs[0]["texts"][0]["prompt_tokens"] - 1 + 0  # BOS id 0


def test_pickle_checkpoints_load_only_when_allowed(tiny_model, tokenizer, tmp_path):
    model_dir = tmp_path / "pickled"
    model_dir.mkdir()
    tiny_model.config.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    torch.save(tiny_model.state_dict(), model_dir / "pytorch_model.bin")
    with pytest.raises(UsageError, match="model.allow_pickle=true"):
        run_sweep(compose_config(f"model.name={model_dir}", "max_length=8"), tmp_path / "a")
    assert not (tmp_path / "a" / "samples.json").exists()
    allowed = run(tmp_path / "b", f"model.name={model_dir}", "max_length=8", "model.allow_pickle=true")
    assert len(allowed["texts"][0]["tokens"]) == 8


ODD_PROMPTS = {
    "control characters": "bell\x07 escape\x1b[31m tab\t end",
    "right-to-left and combining": "שלום e\u0301 \u202eabc",
    "zero-width joiners and BOM": "\U0001F468\u200d\U0001F469\u200d\U0001F467 \ufeff x",
}


@pytest.mark.parametrize("prompt", ODD_PROMPTS.values(), ids=ODD_PROMPTS.keys())
def test_odd_but_valid_prompts_work_when_quoted(tiny_model_dir, tmp_path, prompt):
    document = run(tmp_path, f"model.name={tiny_model_dir}", f"prompt='{prompt}'", "max_length=60")
    assert document["metadata"]["prompt"] == prompt


def test_empty_prompt_starts_from_bos(tiny_model_dir, tmp_path, tokenizer):
    sample = run(tmp_path, f"model.name={tiny_model_dir}", "prompt=''", "max_length=6")["texts"][0]
    assert sample["tokens"][0] == tokenizer.bos_token_id and sample["prompt_tokens"] == 1


def test_nul_bytes_in_a_prompt_work(tiny_model_dir, tmp_path):
    cfg = compose_config(f"model.name={tiny_model_dir}", "max_length=12")
    cfg.prompt = "nul\x00byte"
    run_sweep(cfg, tmp_path)
    assert artifact(tmp_path)["metadata"]["prompt"] == "nul\x00byte"


def test_many_samples_in_small_batches(tiny_model_dir, tmp_path):
    document = run(tmp_path, f"model.name={tiny_model_dir}", "sampler=nucleus", "num_samples=1500",
                   "batch_size=7", "max_length=3")
    assert len(document["texts"]) == 1500


@pytest.mark.parametrize("overrides, samples", [
    (["sampler=temperature", "num_samples=3", "num_samples=2"], 2),  # the last value wins, as in Hydra
    (["sampler=both", "sampler.temperature=false"], 4),     # a preset, then one switch off
    (["sampler.schedule=grid", "sampler=default"], 4),      # grid with both sweeps off: num_samples
])  # (devices=cpu devices.accelerator=gpu is refused: test_bad_input.py)
def test_contradictory_overrides_work_as_hydra_composes_them(tiny_model_dir, tmp_path, overrides, samples):
    assert len(run(tmp_path, f"model.name={tiny_model_dir}", "max_length=6", *overrides)["texts"]) == samples


def test_a_run_warns_about_a_setting_it_does_not_use(tiny_model_dir, tmp_path, caplog):
    run(tmp_path, f"model.name={tiny_model_dir}", "sampler=temperature", "sampler.temperature_value=0.7",
        "num_samples=2", "max_length=4")
    assert "sampler.temperature_value=0.7 is not used: temperature is swept" in caplog.text


def test_the_console_shows_our_info_lines_and_no_library_info_lines(tiny_model_dir, tmp_path, monkeypatch):
    """A library's INFO record stays in run.log: torch's FakeTensor cache stats at exit, which reach the
    root logger where a Ctrl-C cut torch's import short before torch set up its own logging."""
    torch_logger = logging.getLogger("torch")  # as it is before torch's logging is set up
    monkeypatch.setattr(torch_logger, "propagate", True)
    monkeypatch.setattr(torch_logger, "handlers", [])
    monkeypatch.setattr(torch_logger, "level", logging.NOTSET)
    quiet_libraries = gpt2_sweep.runner.sweep.quiet_libraries

    def quiet_libraries_then_log():
        quiet_libraries()
        logging.getLogger("torch._subclasses.fake_tensor_stats").info("FakeTensor cache stats:")
        logging.getLogger("gpt2_sweep.runner.progress").info("Generated 1 of 2 samples")
        logging.getLogger("torch._subclasses.fake_tensor_stats").warning("a library's warning")

    monkeypatch.setattr(gpt2_sweep.runner.sweep, "quiet_libraries", quiet_libraries_then_log)
    result = run_app(f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=2", "max_length=4",
                     f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["info: Generated 1 of 2 samples", "warning: a library's warning"]
    assert "[torch._subclasses.fake_tensor_stats][INFO] - FakeTensor cache stats:" in (tmp_path / "run.log").read_text()


def test_a_multiruns_jobs_print_one_line_each_and_warnings_go_to_stderr_as_one_plain_line(tiny_model_dir, tmp_path):
    command = ["-m", f"model.name={tiny_model_dir}", "sampler=temperature,both", "num_samples=3", "max_length=6",
               f"hydra.sweep.dir={tmp_path}"]
    result = run_app(*command)
    assert result.returncode == 0, result.stderr
    ours = [line for line in result.stdout.splitlines() if line and "[HYDRA]" not in line
            and not line.startswith("Summary of")]
    assert ours == [f"Samples written to {tmp_path / job / 'samples.json'}" for job in ("0", "1")], result.stdout
    assert result.stderr.splitlines() == ["warning: " + BOTH_ON_PAIRED_WARNING], result.stderr
    assert "[WARNING]" in (tmp_path / "1" / "run.log").read_text()  # the log keeps the time
    shown = run_app(*command, "print_samples=1", "overwrite=true")  # set on the command line: printed
    assert shown.returncode == 0 and shown.stdout.count("--- Sample 1 ") == 2, shown.stdout
