"""What a run prints: print_samples samples in full, then one line each up to a limit, then a count."""
import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO
from gpt2_sweep.errors import UsageError
from gpt2_sweep.runner.options import read_options
from gpt2_sweep.runner.printing import ONE_LINE_SAMPLES, print_samples
from gpt2_sweep.runner.sweep import run_sweep


def config(*overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_a_large_run_prints_a_few_samples_in_full_then_one_line_each_then_a_count(tiny_model_dir, tmp_path, capsys):
    overrides = [f"model.name={tiny_model_dir}", "sampler=nucleus", "num_samples=30", "max_length=8",
                 "prompt=The fox"]
    artifact_path = run_sweep(config(*overrides, "print_samples=2"), tmp_path)
    printed = capsys.readouterr().out
    assert printed.count("--- Sample ") == 2 and "--- Sample 2 (temperature=1, nucleus=0.0345) ---" in printed
    one_line = [line for line in printed.splitlines() if line[:5].strip().isdigit()]
    assert [int(line.split()[0]) for line in one_line] == list(range(3, 3 + ONE_LINE_SAMPLES))
    assert all("temperature=1 nucleus=" in line for line in one_line)
    assert f"... and {30 - 2 - ONE_LINE_SAMPLES} more samples in {artifact_path}" in printed

    run_sweep(config(*overrides, "print_samples=5"), tmp_path)  # print_samples leaves the samples as they are
    assert capsys.readouterr().out.startswith("Skipped:")

    run_sweep(config(*overrides, "print_samples=0", "overwrite=true"), tmp_path)
    printed = capsys.readouterr().out
    assert "Sample " not in printed.replace("Samples written", "") and "temperature=" not in printed
    assert printed.splitlines()[-1] == f"Samples written to {artifact_path}"

    run_sweep(config(*overrides, "print_samples=40", "overwrite=true"), tmp_path)
    printed = capsys.readouterr().out
    assert printed.count("--- Sample ") == 30 and "more samples" not in printed and "departs from the reference" not in printed


@pytest.mark.parametrize("value", [-1, 1.5, "many", True])
def test_print_samples_is_a_count(value):
    cfg = config()
    cfg.print_samples = value
    with pytest.raises(UsageError, match=r"print_samples=.* is not allowed: an integer >= 0") as error:
        read_options(cfg)
    assert "\n" not in str(error.value)


def entry(nucleus: float, strings: list[str], diverges_from) -> dict:
    return {"temperature": 1.0, "nucleus": nucleus, "text": "The fox" + "".join(strings),
            "continuation": "".join(strings), "token_strings": strings, "metrics": {"diverges_from": diverges_from}}


def test_one_line_previews_start_where_each_sample_departs_from_the_reference(capsys, tmp_path):
    shared = [" jumps", " over", " the", " lazy", " dog", " and"]
    texts = [entry(0.0, shared + [" runs", " off"], None),            # the reference
             entry(0.5, shared + [" sleeps", " well"], 6),             # departs late: the start is cut
             entry(0.7, [" sat"] + shared[1:] + [" runs", " off"], 0),  # departs at once
             entry(0.9, shared + [" runs", " off"], None)]              # never departs
    print_samples(texts, 1, tmp_path / "samples.json")
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line[:5].strip().isdigit()}
    assert lines["2"].endswith("…' lazy dog and⟨ sleeps⟩ well'")
    assert lines["3"].endswith("'⟨ sat⟩ over the lazy dog and runs off'")
    assert lines["4"].endswith("' jumps over the lazy dog and runs off'")
