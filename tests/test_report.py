"""report.html: written beside every summary and by every single run, self-contained, and working in
headless Chromium (the tests marked browser: Debian's chromium driven by Playwright)."""
import base64
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO
from gpt2_sweep.analysis.report import REPORT_NAME, UNIFORM_SCALE, report_data, write_report
from gpt2_sweep.analysis.summary import summarize
from gpt2_sweep.artifact import write_json_atomic, write_table_atomic
from gpt2_sweep.decoding.sampling import sample_uniforms
from gpt2_sweep.analysis.load import load_samples
from gpt2_sweep.runner.sweep import run_sweep

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PROMPT_TOKENS = [5, 6]
# Per sample of the hand-made run "fox": its temperature, generated tokens and perplexity. The
# reference is the greedy sample (the second), not the first; the first is identical to it.
FOX = [(0.5, [10, 11, 12, 13], 3.0), (0.0, [10, 11, 12, 13], 2.0), (1.0, [10, 11, 20, 21], 9.0),
       (1.5, [30, 31, 32, 33], 5.0)]
FOX_DEPARTS = [None, None, 2, 0]
SWEEP = [(0.0, [40, 41, 42, 43], 4.0), (1.0, [40, 44, 45, 46], 6.0)]
P_VALUES = [0.11, 0.22, 0.33, 0.44, 0.55]


def text_entry(temperature: float, generated: list[int], perplexity: float) -> dict:
    return {"temperature": temperature, "nucleus": 1.0, "text": "t", "continuation": "c",
            "tokens": PROMPT_TOKENS + generated, "prompt_tokens": len(PROMPT_TOKENS),
            "token_logprobs": [-0.5 * (position + 1) for position in range(len(generated))],
            "token_strings": [f"w{token}" for token in generated], "token_kept": [7 + token for token in generated],
            "metrics": {"perplexity": perplexity, "logprob": -1.0}}


def write_run(directory: Path, prompt: str, samples) -> None:
    metadata = {"model_name": "hand-made", "prompt": prompt, "p_values": P_VALUES, "seed": 0, "schedule": "paired",
                "sweeps": {"temperature": True, "nucleus": False}, "overrides": []}
    write_json_atomic(directory / "samples.json", {"metadata": metadata, "texts": [text_entry(*sample) for sample in samples]})


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory) -> Path:
    """Two one-prompt runs (4 and 2 samples) and their summary."""
    directory = tmp_path_factory.mktemp("hand-made")
    write_run(directory / "fox", "The fox", FOX)
    write_run(directory / "sweep", "A sweep", SWEEP)
    summarize(directory)
    return directory


def write_study(directory: Path, prompts: int, settings: int, draws: int, new_tokens: int) -> None:
    """A study's artifact through the artifact writer: prompts x draws x settings samples of random
    tokens, log p and kept-set sizes."""
    generator = np.random.default_rng(0)
    temperatures = np.round(np.linspace(0.0, 1.2, settings), 6)

    def chunks():
        for prompt in range(prompts):
            records = []
            for draw in range(draws):
                for temperature in temperatures:
                    generated = generator.integers(100, 5100, new_tokens).tolist()
                    records.append({"temperature": float(temperature), "nucleus": 1.0, "prompt_index": prompt,
                                    "draw": draw, "text": "x", "continuation": "x", "tokens": [1, 2, *generated],
                                    "prompt_tokens": 2, "token_logprobs": (-generator.exponential(2.0, new_tokens)).tolist(),
                                    "token_strings": [f" w{token}" for token in generated],
                                    "token_kept": generator.integers(1, 5000, new_tokens).tolist(),
                                    "metrics": {"perplexity": float(generator.uniform(1, 50)), "logprob": -1.0}})
            yield records

    write_table_atomic(directory / "samples.parquet", chunks())
    metadata = {"model_name": "synthetic", "seed": 0, "schedule": "paired", "sweeps": {"temperature": True},
                "samples_file": "samples.parquet", "draws": draws, "max_new_tokens": new_tokens, "overrides": [],
                "prompts": [{"index": index, "text": f"Prompt number {index}", "reference": None} for index in range(prompts)]}
    write_json_atomic(directory / "samples.json", {"metadata": metadata, "texts": None})


def test_every_sample_departs_where_its_tokens_leave_its_groups_greedy_sample(hand_made):
    data = report_data(load_samples(hand_made))
    assert data["departs"] == [-1 if position is None else position for position in FOX_DEPARTS] + [-1, 1]
    assert [group["reference"] for group in data["groups"]] == [1, 4]
    assert [group["prompt"] for group in data["groups"]] == ["The fox", "A sweep"]


def page_data(path: Path) -> dict:
    """The data a written report.html embeds."""
    found = re.search(r'<script id="data" type="application/json">(.*?)</script>', path.read_text(encoding="utf-8"), re.S)
    return json.loads(found.group(1))


def test_the_summary_writes_a_page_that_needs_no_network(hand_made):
    page = (hand_made / REPORT_NAME).read_text(encoding="utf-8")
    assert not re.findall(r"""(?:src|href)\s*=\s*["'](?!data:|#)""", page)  # nothing fetched: all inline
    assert "<script src" not in page and "@import" not in page and "The fox" in page


def test_a_single_study_run_writes_its_page_with_the_uniforms_each_token_read(tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The fox\nA sweep of words\n", encoding="utf-8")
    overrides = [f"model.name={tiny_model_dir}", f"prompts={prompts}", "max_new_tokens=4", "draws=2", "seed=3",
                 "print_samples=0", "sampler=temperature", "num_samples=2"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    run_sweep(cfg, tmp_path / "run", overrides)
    data = page_data(tmp_path / "run" / REPORT_NAME)
    samples = load_samples(tmp_path / "run")
    assert [(group["prompt_index"], group["draw"]) for group in data["groups"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for group in data["groups"]:
        first = samples[(samples.prompt_index == group["prompt_index"]) & (samples.draw == group["draw"])].iloc[0]
        vector = sample_uniforms(3, group["prompt_index"], group["draw"], first.prompt_tokens + 4 - 1)
        read = np.frombuffer(base64.b64decode(group["u"]), dtype="<u2") / UNIFORM_SCALE
        assert read == pytest.approx(vector[first.prompt_tokens - 1:].numpy(), abs=0.5 / UNIFORM_SCALE)
    for sample in samples.itertuples():  # each step's kept-set size: their mean is the sample's metric
        assert np.mean(sample.token_kept) == pytest.approx(sample.mean_nucleus_size)
    assert data["kept"] is not None and len(data["vocabulary"]) > 0


def without_browser(why: str) -> None:
    """Skipped on a machine without Chromium; a failure in CI (.ci/run), which installs it."""
    if os.environ.get("GPT2_SWEEP_BROWSER_TESTS") == "required":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright import sync_api as playwright
    except ImportError:
        without_browser("no playwright: pip install -r requirements.txt")
    if not Path(CHROMIUM).is_file():
        without_browser(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class OpenPage:
    """A report opened in a fresh page, with every console error and uncaught exception it raised."""

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors = []
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        started = time.perf_counter()
        self.page.goto(path.absolute().as_uri())
        self.page.wait_for_selector("body[data-ready=true]")
        self.seconds = time.perf_counter() - started

    def lines(self, group: int | None = None) -> list[str]:
        """The samples shown (their indices), of one group or all."""
        scope = self.page if group is None else self.page.locator("section.group").nth(group)
        return [int(value) for value in scope.locator("tr[data-sample]").evaluate_all(
            "rows => rows.map(row => row.dataset.sample)")]

    def choose(self, select: str, label: str) -> None:
        self.page.select_option(select, label=label)


@pytest.fixture
def page(browser, hand_made):
    opened = OpenPage(browser, hand_made / REPORT_NAME)
    yield opened
    assert opened.errors == []
    opened.page.close()


@pytest.mark.browser
def test_the_page_loads_without_errors_and_shows_each_prompts_samples(page):
    assert page.page.locator("section.group").count() == 2
    assert page.lines(0) == [1, 0, 2, 3] and page.lines(1) == [4, 5]  # the reference line first
    assert page.page.locator("section.group h3").all_inner_texts()[1].startswith("Prompt 0, draw 0")
    assert page.page.locator("#per-setting tbody tr").count() == 6
    assert page.page.locator("figure img").count() >= 1


@pytest.mark.browser
def test_the_departure_marker_sits_on_the_first_token_that_differs(page):
    marked = page.page.locator("#groups .tok.departs")
    rows = marked.evaluate_all("tokens => tokens.map(t => [Number(t.closest('tr').dataset.sample), Number(t.dataset.position)])")
    assert sorted(rows) == [[2, 2], [3, 0], [5, 1]]
    assert marked.first.evaluate("t => getComputedStyle(t, '::before').content") != "none"  # not colour alone


@pytest.mark.browser
def test_a_focused_token_tells_its_probability_u_kept_set_and_setting(page):
    token = page.page.locator('tr[data-sample="2"] .tok').first
    token.focus()
    page.page.keyboard.press("ArrowRight")
    page.page.keyboard.press("ArrowRight")
    focused = page.page.evaluate("[document.activeElement.closest('tr').dataset.sample, document.activeElement.dataset.position]")
    assert focused == ["2", "2"]
    tip = page.page.inner_text("#tip")
    assert 'token "w20"' in tip and f"probability {math.exp(-1.5):.3g}" in tip
    assert "u 0.4400" in tip  # position 2 after 2 prompt tokens: u = p_values[2 + 2 - 1]
    assert "kept set 27 tokens" in tip and "temperature 1" in tip and "departs from the reference" in tip


@pytest.mark.browser
def test_filtering_sorting_and_jumping_from_a_summary_row(page):
    page.choose("#filter-temperature", "1")
    assert page.lines() == [2, 5]
    page.choose("#filter-temperature", "all (4)")
    page.choose("#sort", "perplexity")
    page.choose("#order", "descending")
    assert page.lines(0) == [5, 4] and page.lines(1) == [2, 3, 0, 1]  # groups by their mean: 5 before 4.75
    page.choose("#order", "ascending")
    assert page.lines(0) == [1, 0, 3, 2] and page.lines(1) == [4, 5]
    page.page.locator('#per-setting tr:has(td:text-is("1.5")) button.jump').click()
    assert page.lines() == [3]
    assert page.page.evaluate("document.activeElement.id") == "samples"


@pytest.mark.browser
def test_no_serious_accessibility_violation(page):
    from axe_playwright_python.sync_playwright import Axe

    page.page.locator('tr[data-sample="0"] .tok').first.hover()  # with its tooltip shown
    violations = Axe().run(page.page).response["violations"]
    assert [(violation["id"], violation["impact"]) for violation in violations
            if violation["impact"] in ("serious", "critical")] == []


@pytest.mark.browser
@pytest.mark.slow
def test_a_page_of_40000_samples_opens_within_3_seconds(browser, tmp_path):
    write_study(tmp_path, prompts=100, settings=200, draws=2, new_tokens=64)
    path = write_report(tmp_path, load_samples(tmp_path))
    size = path.stat().st_size
    opened = OpenPage(browser, path)
    assert opened.errors == []
    assert opened.page.locator("tr[data-sample]").count() <= 200  # one page, not 40,000 lines
    assert "40,000 samples in 200 groups" in opened.page.inner_text("#status")
    print(f"report of 40,000 samples: {size / 2 ** 20:.1f} MiB, opened in {opened.seconds:.2f} s")
    assert size < 50 * 10 ** 6 and opened.seconds < 3
