"""top_k and min_p as schedule axes beside temperature and nucleus, through run_sweep."""
import json

from hydra import compose, initialize_config_dir

from conftest import REPO
import gpt2_sweep
from gpt2_sweep.analysis.plots import grid_medians
from gpt2_sweep.analysis.summary import summarize
from gpt2_sweep.runner.sweep import run_sweep


def sweep(tiny_model_dir, directory, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model.name={tiny_model_dir}", "max_length=10", *overrides])
    run_sweep(cfg, directory)
    return json.loads((directory / "samples.json").read_text(encoding="utf-8"))


def test_a_grid_of_three_axes_writes_every_combination(tiny_model_dir, tmp_path):
    document = sweep(tiny_model_dir, tmp_path, "sampler=both", "sampler.top_k=true", "sampler.top_k_range=[1,20]",
                     "sampler.schedule=grid", "num_samples=2")
    texts = document["texts"]
    assert len(texts) == 8 and document["metadata"]["num_samples"] == 8
    assert {(s["temperature"], s["nucleus"], s["top_k"]) for s in texts} == {
        (t, p, k) for t in (0.0, 1.2) for p in (0.0, 1.0) for k in (1, 20)}
    assert all("min_p" not in s for s in texts)  # keys only for the axes in use
    assert document["metadata"]["sweeps"] == {"temperature": True, "nucleus": True, "top_k": True, "min_p": False}
    assert (document["metadata"]["temperatures"], document["metadata"]["nucleus"]) == (True, True)
    summarize(tmp_path)
    assert "| model | prompt | temperature | nucleus | top_k | samples |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "heatmap_perplexity.png").exists()


def test_the_heatmap_takes_whichever_two_axes_a_grid_swept(tiny_model_dir, tmp_path):
    sweep(tiny_model_dir, tmp_path, "sampler.top_k=true", "sampler.min_p=true", "sampler.top_k_range=[1,20]",
          "sampler.schedule=grid", "num_samples=3", "sampler.temperature_value=1.3")
    medians = grid_medians(gpt2_sweep.load(tmp_path), "perplexity")
    assert (medians.row_axis, medians.column_axis) == ("top_k", "min_p")
    assert (medians.row_values, medians.column_values) == ([1, 11, 20], [0.0, 0.15, 0.3])  # 10.5 rounded half up
    assert medians.medians.shape == (3, 3) and (medians.counts == 1).all()


def test_a_fixed_temperature_beside_a_nucleus_sweep(tiny_model_dir, tmp_path, caplog):
    document = sweep(tiny_model_dir, tmp_path, "sampler=nucleus", "sampler.temperature_value=0.7", "num_samples=3")
    assert [(s["temperature"], s["nucleus"]) for s in document["texts"]] == [(0.7, 0.0), (0.7, 0.5), (0.7, 1.0)]
    assert "sweeps are on" not in caplog.text and "Both" not in caplog.text


def test_top_k_one_and_min_p_one_are_greedy(tiny_model_dir, tmp_path):
    greedy = sweep(tiny_model_dir, tmp_path / "greedy", "sampler=temperature", "sampler.temperature_range=[0,0]",
                   "num_samples=1")["texts"][0]["tokens"]
    for name, overrides in {"top_k": ["sampler.top_k_value=1"], "min_p": ["sampler.min_p_value=1.0"]}.items():
        texts = sweep(tiny_model_dir, tmp_path / name, "sampler.temperature_value=1.5", *overrides,
                      "num_samples=1")["texts"]
        assert texts[0]["tokens"] == greedy and name in texts[0]
