"""runtime.batch_invariant: a sample's tokens do not depend on the batch it is drawn in."""
import json

import pytest
import torch
from hydra import compose, initialize_config_dir

import gpt2_sweep.runner.module
from conftest import REPO, single_prompt, tiny_gpt2
from gpt2_sweep.decoding.engines import Engine, decode, generate_static
from gpt2_sweep.decoding.generation import generate
from gpt2_sweep.decoding.sampling import RowSettings, shared_uniforms
from gpt2_sweep.runner.sweep import run_sweep

TEMPERATURES = torch.linspace(0.0, 1.5, 16)
NUCLEI = torch.linspace(0.05, 1.0, 16).flip(0)
SETTINGS = RowSettings(TEMPERATURES, NUCLEI)


pytestmark = pytest.mark.usefixtures("every_core")


def texts(directory):
    return json.loads((directory / "samples.json").read_text(encoding="utf-8"))["texts"]


def sweep(tiny_model_dir, directory, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model.name={tiny_model_dir}", "sampler=both",
                                                        "num_samples=16", "max_length=14", *overrides])
    run_sweep(cfg, directory)
    return json.loads((directory / "samples.json").read_text(encoding="utf-8"))


def test_the_mode_gives_the_plain_paths_samples_at_every_batch_size(tiny_model_dir, tmp_path):
    plain = sweep(tiny_model_dir, tmp_path / "plain")
    assert plain["metadata"]["batch_invariant"] is False and plain["metadata"]["engine"]["batch_invariant_rows"] is None
    for batch_size in (1, 3, 4, 7, 16):
        document = sweep(tiny_model_dir, tmp_path / str(batch_size), "runtime.batch_invariant=true",
                         f"batch_size={batch_size}")
        assert document["metadata"]["batch_invariant"] is True
        # The CPU in float32 is invariant from MIN_DECODE_ROWS rows up: no blocks, the whole batch at once.
        assert document["metadata"]["engine"]["batch_invariant_rows"] is None
        assert [s["tokens"] for s in document["texts"]] == [s["tokens"] for s in plain["texts"]], batch_size


def test_the_mode_survives_an_out_of_memory_split(tiny_model_dir, tmp_path, monkeypatch):
    plain = sweep(tiny_model_dir, tmp_path / "plain", "runtime.batch_invariant=true")
    real = gpt2_sweep.runner.module.decode

    def out_of_memory_above_five(engine, model, prompt_ids, temperatures, *args, **kwargs):
        if len(temperatures) > 5:
            raise torch.OutOfMemoryError("simulated out of memory")
        return real(engine, model, prompt_ids, temperatures, *args, **kwargs)

    monkeypatch.setattr(gpt2_sweep.runner.module, "decode", out_of_memory_above_five)
    split = sweep(tiny_model_dir, tmp_path / "split", "runtime.batch_invariant=true")
    assert split["metadata"]["batch_size_after_out_of_memory"] == 4
    assert split["texts"] == plain["texts"]


@pytest.mark.parametrize("loop", ["static", "dynamic"])
def test_blocks_of_fixed_rows_give_the_same_samples_in_any_grouping(loop):
    model, prompt, uniforms = tiny_gpt2(3000, seed=1), [5, 17], shared_uniforms(6, 23)
    engine = Engine(loop, "NativeGPT2" if loop == "static" else "transformers", "top candidates, else a full sort",
                    False, False, batch_invariant_rows=4)
    whole = decode(engine, model, *single_prompt(prompt, SETTINGS, uniforms, 24))
    plain = generate(model, *single_prompt(prompt, SETTINGS, uniforms, 24))
    if loop == "static":  # MKL's reproducible mode already makes rows invariant: blocks change nothing
        plain = generate_static(model, *single_prompt(prompt, SETTINGS, uniforms, 24))
    assert torch.equal(whole.tokens, plain.tokens)
    for group in ([0], [15, 2, 9], list(range(7)), [3, 1, 4, 1, 5, 9, 2, 6, 5]):
        part = decode(engine, model, *single_prompt(prompt, SETTINGS.rows(group), uniforms, 24))
        assert torch.equal(part.tokens, whole.tokens[group]), group
        assert torch.equal(part.logprobs, whole.logprobs[group])
