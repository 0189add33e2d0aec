"""Prompt sets: the four file formats, the corpus cut, offset, limit and a random pick, and every
refusal as one line before the model loads."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import compose_config, run_app
from gpt2_sweep.errors import UsageError
from gpt2_sweep.runner.checks import check_before_loading
from gpt2_sweep.runner.options import read_options
from gpt2_sweep.runner.prompts import read_prompt_set
from test_bad_input import no_model_loading, refusal  # noqa: F401 - the fixture, and the one-line refusal

PROMPTS = ["The quick brown fox", "A sweep, over \"quotes\"", "Language models write"]
REFERENCES = ["jumps over the dog.", None, "one token at a time."]


def prompt_set(tokenizer, path, *overrides, new_tokens=8, seed=0):
    options = read_options(compose_config(f"prompts={path}", f"max_new_tokens={new_tokens}", f"seed={seed}",
                                          *overrides))
    return read_prompt_set(options.prompt_set, options.seed, tokenizer, new_tokens)


def write_set(directory, suffix: str, prompt_column="prompt", reference_column="reference"):
    path = directory / f"set{suffix}"
    records = [{prompt_column: p, reference_column: r} for p, r in zip(PROMPTS, REFERENCES)]
    if suffix == ".txt":
        path.write_text("\n".join(PROMPTS[:1] + ["", "  "] + PROMPTS[1:]) + "\n", encoding="utf-8")
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(record) for record in records) + "\n\n", encoding="utf-8")
    elif suffix == ".csv":
        lines = [f"{prompt_column},{reference_column}", 'The quick brown fox,jumps over the dog.',
                 '"A sweep, over ""quotes""",', 'Language models write,one token at a time.']
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return path


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".parquet"])
def test_each_format_gives_the_prompts_in_file_order_with_their_index(tokenizer, tmp_path, suffix):
    path = write_set(tmp_path, suffix)
    prompts = prompt_set(tokenizer, path, *([] if suffix == ".txt" else ["prompt_set.reference_column=reference"]))
    assert [p.text for p in prompts] == PROMPTS and [p.index for p in prompts] == [0, 1, 2]
    # A .txt set has no references; an empty csv field reads as an empty text.
    expected = {".txt": [None] * 3, ".csv": [REFERENCES[0], "", REFERENCES[2]]}.get(suffix, REFERENCES)
    assert [p.reference for p in prompts] == expected


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_column_names_are_configurable(tokenizer, tmp_path, suffix):
    path = write_set(tmp_path, suffix, prompt_column="question", reference_column="answer")
    prompts = prompt_set(tokenizer, path, "prompt_set.column=question", "prompt_set.reference_column=answer")
    assert [p.text for p in prompts] == PROMPTS and prompts[2].reference == REFERENCES[2]


def test_offset_and_limit_take_a_slice_that_keeps_the_file_index(tokenizer, tmp_path):
    path = tmp_path / "many.txt"
    path.write_text("".join(f"prompt {i}\n" for i in range(10)), encoding="utf-8")
    sliced = prompt_set(tokenizer, path, "prompt_set.offset=3", "prompt_set.limit=4")
    assert [(p.index, p.text) for p in sliced] == [(i, f"prompt {i}") for i in range(3, 7)]
    assert [p.index for p in prompt_set(tokenizer, path, "prompt_set.offset=8", "prompt_set.limit=4")] == [8, 9]


def test_a_random_pick_is_drawn_with_the_seed_and_kept_in_file_order(tokenizer, tmp_path):
    path = tmp_path / "many.txt"
    path.write_text("".join(f"prompt {i}\n" for i in range(50)), encoding="utf-8")

    def picked(seed, *overrides):
        return [p.index for p in prompt_set(tokenizer, path, "prompt_set.pick=random", "prompt_set.limit=5",
                                            *overrides, seed=seed)]
    first = picked(0)
    assert len(set(first)) == 5 and first == sorted(first) and first == picked(0)
    assert first != list(range(5)) and picked(1) != first
    assert all(index >= 40 for index in picked(0, "prompt_set.offset=40"))


CORPUS = ("In the beginning was the word. And the word was with the fox.\nThe second line follows.\n"
          "\n\n  \n"
          "A short passage.\n"
          "\n"
          "Language models write one token at a time, each drawn from a distribution! Then more.\n")


def test_the_corpus_is_cut_at_blank_lines_into_openings_and_the_human_text_that_follows(tokenizer, tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(CORPUS, encoding="utf-8")
    paragraphs = prompt_set(tokenizer, path, "prompt_set.corpus=true", "prompt_set.opening_tokens=100", new_tokens=6)
    assert [p.text for p in paragraphs] == [
        "In the beginning was the word. And the word was with the fox.", "A short passage.",
        "Language models write one token at a time, each drawn from a distribution! Then more."]
    assert [p.index for p in paragraphs] == [0, 1, 2]
    following = tokenizer.encode("\nThe second line follows.")[:6]
    assert paragraphs[0].reference == tokenizer.decode(following) and len(following) == 6
    assert paragraphs[1].reference == "" and paragraphs[2].reference == ""  # nothing follows them
    sentences = prompt_set(tokenizer, path, "prompt_set.corpus=true", "prompt_set.opening=sentence",
                           "prompt_set.opening_tokens=100", new_tokens=4)
    assert [p.text for p in sentences] == ["In the beginning was the word.", "A short passage.",
                                           "Language models write one token at a time, each drawn from a distribution!"]
    assert sentences[0].reference == tokenizer.decode(tokenizer.encode(" And the word was with the fox.")[:4])


def test_the_corpus_opening_is_cut_to_its_token_limit_and_the_reference_follows_the_cut(tokenizer, tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(CORPUS, encoding="utf-8")
    passage = "Language models write one token at a time, each drawn from a distribution! Then more."
    [cut] = prompt_set(tokenizer, path, "prompt_set.corpus=true", "prompt_set.offset=2", "prompt_set.opening_tokens=5",
                       new_tokens=3)
    ids = tokenizer.encode(passage)
    assert cut.index == 2 and len(tokenizer.encode(cut.text)) == 5 and passage.startswith(cut.text)
    assert cut.text == tokenizer.decode(ids[:5])
    assert cut.reference == tokenizer.decode(tokenizer.encode(passage[len(cut.text):])[:3])


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


REFUSALS = [  # (file name, its text, overrides, what the one line names)
    (None, None, ["max_new_tokens=4"], "no such file"),
    ("empty.txt", "\n\n", ["max_new_tokens=4"], "holds no prompt"),
    ("empty.jsonl", "", ["max_new_tokens=4"], "holds no prompt"),
    ("blank.txt", "  \n", ["max_new_tokens=4", "prompt_set.corpus=true"], "holds no passage"),
    ("set.csv", "question\nhi\n", ["max_new_tokens=4"], "prompt_set.column='prompt': "),
    ("set.csv", "prompt\nhi\n", ["max_new_tokens=4", "prompt_set.reference_column=human"],
     "prompt_set.reference_column='human'"),
    ("set.jsonl", '{"prompt": 3}\n', ["max_new_tokens=4"], "prompt 0 has 3 in column 'prompt', not text"),
    ("set.jsonl", '{"prompt": "a"}\nnot json\n', ["max_new_tokens=4"], "line 2 is not a JSON object"),
    ("set.yaml", "- a\n", ["max_new_tokens=4"], "unknown file type '.yaml'"),
    ("set.txt", "a\n", [], "needs max_new_tokens=N"),
    ("set.txt", "a\n", ["max_new_tokens=4", "prompt=hi"], "cannot go together"),
    ("set.txt", "a\nb\n", ["max_new_tokens=4", "prompt_set.offset=2"], "prompt_set.offset=2 leaves no prompt"),
    ("set.txt", "a\n", ["max_new_tokens=4", "prompt_set.pick=last"], "prompt_set.pick='last'"),
    ("set.txt", "a\n", ["max_new_tokens=4", "prompt_set.limit=0"], "prompt_set.limit=0"),
    ("set.txt", "a\n", ["max_new_tokens=0"], "max_new_tokens=0"),
    ("set.txt", "a\n", ["max_new_tokens=4", "draws=0"], "draws=0"),
    ("set.txt", "a\n", ["max_new_tokens=4", "output_json=x.json"], "output_json='x.json' is for runs of one prompt"),
    ("set.txt", "short\n" + "The quick brown fox " * 5 + "\n", ["max_new_tokens=30"],
     "prompt 1 ('The quick brown fox The quick brown fox '...): max_new_tokens=30"),
]


@pytest.mark.parametrize("name, text, overrides, named", REFUSALS, ids=[r[3][:30] for r in REFUSALS])
def test_a_bad_prompt_set_is_one_line_before_the_model_loads(tiny_model_dir, tmp_path, no_model_loading,  # noqa: F811
                                                            name, text, overrides, named):
    path = write(tmp_path, name, text) if name else tmp_path / "missing.txt"
    line = refusal(tiny_model_dir, tmp_path / "run", f"prompts={path}", *overrides)
    assert named in line and "\n" not in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, text, named", [(None, None, "no such file"), ("set.csv", "q\nhi\n", "no such column")])
def test_the_file_is_checked_before_torch_loads(tmp_path, name, text, named):
    path = write(tmp_path, name, text) if name else tmp_path / "missing.txt"
    with pytest.raises(UsageError, match=named):
        check_before_loading(compose_config(f"prompts={path}", "max_new_tokens=4"))


def test_the_command_line_refuses_a_missing_prompt_file_in_one_line_with_exit_code_2(tmp_path):
    ended = run_app(f"prompts={tmp_path / 'missing.txt'}", "max_new_tokens=4", f"hydra.run.dir={tmp_path / 'run'}")
    assert ended.returncode == 2 and ended.stderr.strip().count("\n") == 0
    assert "missing.txt" in ended.stderr and "no such file" in ended.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides, message", [
    (["prompt_set.colum=q"], "unknown key prompt_set.colum: did you mean prompt_set.column?"),
    (["+prompt_set.limt=3"], "unknown key prompt_set.limt: did you mean prompt_set.limit?"),
])
def test_a_mistyped_prompt_set_key_is_refused(overrides, message):
    from gpt2_sweep.runner.keys import check_keys
    from hydra.errors import HydraException

    from gpt2_sweep.runner.cli import one_line
    try:
        cfg = compose_config(*overrides)
    except HydraException as error:
        line = one_line(error)
    else:
        with pytest.raises(UsageError) as refused:
            check_keys(cfg)
        line = str(refused.value)
    assert line.startswith(message), line
