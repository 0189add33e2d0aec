"""A study: every prompt x draw x setting in one run, one vector of uniforms per (prompt, draw) by a
documented rule, one-prompt runs unchanged, the artifact read back by load(), slices equal to the whole."""
import hashlib
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import gpt2_sweep
from conftest import artifact, compose_config, run_cli, single_prompt
from gpt2_sweep.decoding.generation import generate
from gpt2_sweep.decoding.sampling import RowSettings, derived_seed, sample_uniforms, shared_uniforms
from gpt2_sweep.runner.module import SamplingModule
from gpt2_sweep.runner.prompts import Prompt
from gpt2_sweep.runner.schedules import Setting
from gpt2_sweep.runner.study import Study
from gpt2_sweep.runner.sweep import run_sweep

PROMPTS = ["The quick brown fox jumps", "A sweep", "Language models write one token"]
NEW_TOKENS = 6
# The metadata and text entry keys of a one-prompt run's samples.json (those before prompt sets, and compute_dtype).
ONE_PROMPT_METADATA = ["model_name", "model_source", "num_samples", "max_length", "nucleus", "temperatures", "sweeps",
                       "prompt", "p_values", "seed", "num_samples_requested", "schedule", "batch_size",
                       "batch_size_after_out_of_memory", "stop_at_eos", "device", "device_name", "devices", "dtype",
                       "compute_dtype", "precision", "engine", "batch_invariant", "model_identity", "versions", "created", "config", "overrides"]
ONE_PROMPT_ENTRY = ["nucleus", "temperature", "text", "continuation", "tokens", "prompt_tokens", "metrics",
                    "token_logprobs", "token_strings", "token_kept"]


def test_prompt_0_draw_0_reads_the_runs_one_vector_and_every_other_pair_its_own_seed():
    assert torch.equal(sample_uniforms(7, 0, 0, 30), shared_uniforms(7, 30))
    digest = hashlib.sha256(b"gpt2_sweep uniforms 7 2 1").digest()
    assert derived_seed(7, 2, 1) == int.from_bytes(digest[:8], "big")
    assert torch.equal(sample_uniforms(7, 2, 1, 30), shared_uniforms(derived_seed(7, 2, 1), 30))


def test_vectors_of_different_prompts_and_draws_are_independent():
    pairs = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (0, 2)]
    vectors = torch.stack([sample_uniforms(0, prompt, draw, 4000) for prompt, draw in pairs]).double()
    correlations = torch.corrcoef(vectors) - torch.eye(len(pairs), dtype=torch.float64)
    assert correlations.abs().max() < 0.06
    assert len({derived_seed(0, prompt, draw) for prompt, draw in pairs} | {derived_seed(1, 0, 1)}) == len(pairs) + 1
    # Neither a shifted copy of another: no two vectors share a run of values.
    starts = {round(value, 7) for vector in vectors for value in vector[:50].tolist()}
    assert len(starts) == 50 * len(pairs)


def test_every_prompt_is_crossed_with_every_draw_and_setting_in_one_order():
    prompts = [Prompt(4, "a"), Prompt(9, "b c")]
    settings = [Setting(temperature=t) for t in (0.0, 0.5, 1.0)]
    study = Study.crossed(prompts, [[1, 2], [3, 4, 5]], 2, settings, new_tokens=4, seed=3)
    assert len(study) == 12 and study.sample_settings() == settings * 4
    assert [(g.prompt.index, g.draw) for g in study.groups] == [(4, 0), (4, 1), (9, 0), (9, 1)]
    assert study.group_of(torch.arange(12)).tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    vectors = study.vectors()
    assert [len(v) for v in vectors] == [5, 5, 6, 6]  # prompt tokens + new tokens - 1
    assert torch.equal(vectors[3], sample_uniforms(3, 9, 1, 6))
    rows = study.row_uniforms(vectors, torch.tensor([3, 0, 2]))
    assert torch.equal(rows[0], vectors[3][2:6]) and torch.equal(rows[1], vectors[0][1:5])
    assert torch.equal(rows[2], vectors[2][2:6])


def config(model_dir, *overrides):
    return compose_config(f"model.name={model_dir}", "sampler=temperature", "num_samples=2", "print_samples=0",
                          *overrides)


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "human": f"reference {i}"}) + "\n" for i, p in enumerate(PROMPTS)))
    return path


@pytest.fixture(scope="module")
def study_dir(tiny_model_dir, prompt_file, tmp_path_factory):
    directory = tmp_path_factory.mktemp("study")
    run_sweep(config(tiny_model_dir, f"prompts={prompt_file}", "prompt_set.reference_column=human", "draws=2",
                     f"max_new_tokens={NEW_TOKENS}"), directory)
    return directory


def test_a_study_run_holds_every_prompt_draw_and_setting_and_load_names_them(study_dir):
    document = artifact(study_dir)
    metadata = document["metadata"]
    assert document["texts"] is None and (study_dir / metadata["samples_file"]).is_file()
    assert metadata["num_samples"] == 12 and metadata["draws"] == 2 and metadata["max_new_tokens"] == NEW_TOKENS
    assert [{key: prompt[key] for key in ("index", "text", "reference")} for prompt in metadata["prompts"]] == \
        [{"index": i, "text": p, "reference": f"reference {i}"} for i, p in enumerate(PROMPTS)]
    samples = gpt2_sweep.load(study_dir)
    assert len(samples) == 12 and list(samples["sample"]) == list(range(12))
    assert list(zip(samples.prompt_index, samples.draw, samples.temperature)) == [
        (p, d, t) for p in range(3) for d in range(2) for t in (0.0, 1.2)]
    assert list(samples.prompt) == [p for p in PROMPTS for _ in range(4)]
    assert list(samples.reference) == [f"reference {i}" for i in range(3) for _ in range(4)]
    for _, row in samples.iterrows():
        assert row.text.startswith(row.prompt) and row.generated_tokens == NEW_TOKENS
        assert len(row.tokens) == row.prompt_tokens + NEW_TOKENS and len(row.token_logprobs) == NEW_TOKENS
    # The greedy samples of one prompt agree across draws; the sampled ones read other uniforms.
    greedy = samples[samples.temperature == 0.0]
    assert greedy.groupby("prompt_index").tokens.apply(lambda t: list(t.iloc[0]) == list(t.iloc[1])).all()
    hot = samples[samples.temperature == 1.2]
    assert len({tuple(t[p:]) for t, p in zip(hot.tokens, hot.prompt_tokens)}) == 6


def test_each_samples_vector_is_recovered_from_the_artifact_and_gives_its_tokens(study_dir, tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    metadata = artifact(study_dir)["metadata"]
    for _, row in gpt2_sweep.load(study_dir).iterrows():
        length = int(row.prompt_tokens) + metadata["max_new_tokens"]
        uniforms = sample_uniforms(metadata["seed"], int(row.prompt_index), int(row.draw), length - 1)
        prompt = list(row.tokens[:row.prompt_tokens])
        alone = generate(model, *single_prompt(prompt, RowSettings.of([Setting(temperature=row.temperature,
                                                                                nucleus=row.nucleus)]), uniforms, length))
        assert prompt + alone.tokens[0].tolist() == list(row.tokens)


def test_a_one_prompt_run_keeps_todays_samples_and_artifact(tiny_model_dir, tokenizer, tmp_path):
    run_sweep(config(tiny_model_dir, "prompt='The quick brown fox jumps'", "max_length=12"), tmp_path / "one")
    document = artifact(tmp_path / "one")
    assert list(document["metadata"]) == ONE_PROMPT_METADATA
    assert all(list(entry) == ONE_PROMPT_ENTRY for entry in document["texts"])
    assert document["metadata"]["p_values"] == shared_uniforms(0, 11).tolist()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompt = tokenizer.encode(PROMPTS[0])
    generated = generate(model, *single_prompt(prompt, RowSettings.of([Setting(temperature=0.0), Setting(temperature=1.2)]),
                                               shared_uniforms(0, 11), 12))
    today = torch.cat([torch.tensor(prompt).expand(2, -1), generated.tokens], dim=1)
    assert [entry["tokens"] for entry in document["texts"]] == today.tolist()
    # The same prompt as prompt 0 of a set, draw 0: the same samples.
    (tmp_path / "one.txt").write_text(PROMPTS[0] + "\n" + PROMPTS[1] + "\n")
    new_tokens = 12 - len(tokenizer.encode(PROMPTS[0]))
    run_sweep(config(tiny_model_dir, f"prompts={tmp_path / 'one.txt'}", f"max_new_tokens={new_tokens}"),
              tmp_path / "set")
    in_a_set = gpt2_sweep.load(tmp_path / "set")
    assert [list(t) for t in in_a_set.tokens[in_a_set.prompt_index == 0]] == today.tolist()


def test_slices_of_a_study_run_as_jobs_load_as_the_whole_study(study_dir, tiny_model_dir, prompt_file, tmp_path):
    for job, (offset, limit) in enumerate([(0, 2), (2, 1)]):
        run_sweep(config(tiny_model_dir, f"prompts={prompt_file}", "prompt_set.reference_column=human", "draws=2",
                         f"max_new_tokens={NEW_TOKENS}", f"prompt_set.offset={offset}", f"prompt_set.limit={limit}"),
                  tmp_path / str(job))
    whole, sliced = gpt2_sweep.load(study_dir), gpt2_sweep.load(tmp_path)
    assert list(sliced.job) == ["0"] * 8 + ["1"] * 4
    columns = ["prompt_index", "prompt", "reference", "draw", "temperature", "text"]
    assert sliced[columns].equals(whole[columns])
    assert [list(t) for t in sliced.tokens] == [list(t) for t in whole.tokens]


def test_a_batch_of_rows_from_several_groups_in_any_order_gives_each_samples_tokens(tiny_model, tokenizer):
    prompts = [Prompt(index, text) for index, text in enumerate(PROMPTS)]
    study = Study.crossed(prompts, [tokenizer.encode(p) for p in PROMPTS], 2,
                          [Setting(temperature=0.0), Setting(temperature=1.2)], NEW_TOKENS, 0)
    module = SamplingModule(tiny_model, study)
    in_order = module.sample(torch.arange(len(study)))
    shuffled = torch.tensor([7, 0, 11, 2, 5, 9, 1])  # as a rank of a DistributedSampler may get them
    assert torch.equal(module.sample(shuffled).tokens, in_order.tokens[shuffled])
    assert in_order.tokens.shape == (12, NEW_TOKENS)  # the generated tokens only


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_gives_the_one_process_study(study_dir, tiny_model_dir, prompt_file, tmp_path):
    result = run_cli(f"model.name={tiny_model_dir}", "sampler=temperature", "num_samples=2", "print_samples=0",
                     f"prompts={prompt_file}", "prompt_set.reference_column=human", "draws=2",
                     f"max_new_tokens={NEW_TOKENS}", "devices=ddp", "devices.accelerator=cpu", "devices.ids=2",
                     "batch_size=3", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    one, two = gpt2_sweep.load(study_dir), gpt2_sweep.load(tmp_path)
    assert [list(t) for t in two.tokens] == [list(t) for t in one.tokens]
    assert list(two.prompt_index) == list(one.prompt_index) and list(two.draw) == list(one.draw)


def test_a_reference_is_scored_under_the_model_teacher_forced_after_its_prompt(study_dir, tiny_model_dir, tokenizer):
    """Each reference's first new tokens and the model's log p of each: their mean is the loss that
    transformers computes for the reference after the prompt, so the Human row is measured like a sample."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    for prompt in artifact(study_dir)["metadata"]["prompts"]:
        reference = tokenizer.encode(prompt["reference"])[:NEW_TOKENS]
        assert prompt["reference_tokens"] == reference
        prompt_ids = tokenizer.encode(prompt["text"])
        ids = torch.tensor([prompt_ids + reference])
        labels = ids.clone()
        labels[0, :len(prompt_ids)] = -100
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss.item()
        assert len(prompt["reference_token_logprobs"]) == len(reference)
        assert -sum(prompt["reference_token_logprobs"]) / len(reference) == pytest.approx(loss, abs=1e-5)
    samples = gpt2_sweep.load(study_dir)
    assert list(samples.reference_tokens[samples.prompt_index == 1].iloc[0]) == \
        artifact(study_dir)["metadata"]["prompts"][1]["reference_tokens"]
