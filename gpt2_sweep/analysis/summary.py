"""Summaries of a run or sweep dir, read with load(): summary.csv, summary.md, the pooled tables
(summary_pooled.csv), the line plots, the heatmaps and report.html, and the console line that says
what was written (python -m gpt2_sweep.summarize DIR)."""
import logging
from pathlib import Path

import pandas as pd

from ..artifact import ARTIFACT_NAME, listed
from .load import TOKEN_COLUMNS, load_samples
from .plots import plot_heatmap, plot_lines
from .pooled import MEASURED_ARTIFACT_BYTES, artifacts_measurable, pooled_csv, pooled_markdown, pooled_tables
from .report import REPORT_NAME, Uniforms, write_report
from .tables import METRICS, per_setting, sample_table, with_metrics, write_csv, write_markdown

log = logging.getLogger(__name__)


def samples_under(directory: Path, tokens: tuple[str, ...] = ()) -> pd.DataFrame:
    """Every sample of every complete artifact under directory (none: an empty table), with the
    per-token lists named in tokens only."""
    try:
        return load_samples(directory, tokens=tokens)
    except FileNotFoundError:
        return pd.DataFrame(columns=["job"])


def counted(count: int, name: str) -> str:
    return f"{count} {name}" + ("" if count == 1 else "s")


def summarize(directory: Path, jobs: list[Path] | None = None, uniforms: Uniforms | None = None) -> list[Path]:
    """Write summary.csv, summary.md (the means per setting, then the pooled tables), summary_pooled.csv,
    plot_<metric>.png (where some run swept an axis outside a grid), heatmap_<metric>.png (where
    some run is a grid) and report.html (all of them, and the samples token by token) into
    directory; return their paths.

    The pooled tables' measures across samples and the report's tokens read the samples' per-token
    lists: loaded where the dir's artifacts are small enough (pooled.artifacts_measurable), else
    left out and said so.

    jobs: the job dirs to cover (a multirun's own); by default every artifact under directory.
    uniforms: how the report recomputes a study's vectors of uniforms (report.Uniforms).
    """
    directory = Path(directory)
    measured = artifacts_measurable(directory)
    samples = samples_under(directory, TOKEN_COLUMNS if measured else ())
    unreadable = [Path(path).parent.relative_to(directory).as_posix() for path in samples.attrs.get("unreadable", [])]
    left_out = []
    if jobs is not None:
        covered = {Path(job).relative_to(directory).as_posix() for job in jobs}
        left_out = sorted(set(samples["job"]) - covered)
        samples = samples[samples["job"].isin(covered)]
        if samples.empty:
            earlier = directory / "summary.csv"
            print("No summary written: no job of this multirun finished"
                  + (f" ({earlier} is from an earlier run)" if earlier.exists() else ""))
            return []
    if samples.empty:
        log.warning(f"No {ARTIFACT_NAME} under {directory}: no summary written")
        return []
    table = sample_table(samples)  # every metric a float column, also for artifacts without metrics
    written = [directory / "summary.csv", directory / "summary.md", directory / "summary_pooled.csv"]
    write_csv(table, written[0])
    pooled = pooled_tables(samples, measured)
    write_markdown(per_setting(samples), written[1], pooled_markdown(pooled))
    pooled_csv(pooled, written[2])
    plotted = with_metrics(samples)  # with prompt_index and draw, which summary.csv leaves out
    figures = {"plot": plot_lines, "heatmap": plot_heatmap}
    drawn = {kind: [] for kind in figures}
    for metric in METRICS:
        for kind, draw in figures.items():
            path = directory / f"{kind}_{metric}.png"
            if draw(plotted, metric, path):
                drawn[kind].append(path)
            else:
                path.unlink(missing_ok=True)  # an earlier summary's figure would tell of other samples
    written += drawn["plot"] + drawn["heatmap"]
    note = "" if measured else (f"The tokens are left out: the artifacts exceed the {MEASURED_ARTIFACT_BYTES // 2 ** 20} "
                                "MiB whose per-token lists the summary loads.")
    written.append(write_report(directory, samples, pooled_markdown(pooled), written[3:], note, uniforms))
    shown = ["summary.csv", "summary.md", *(counted(len(paths), kind) for kind, paths in drawn.items() if paths),
             REPORT_NAME]
    pooled_shown = f"; {counted(len(pooled), 'table')} pooled over prompts in summary.md and summary_pooled.csv"
    sources = sorted(set(samples["job"]))
    print(f"Summary of {len(samples)} samples{'' if sources == ['.'] else ' from ' + listed(sources)} written to "
          f"{directory} ({', '.join(shown)}){pooled_shown}"
          + (f"; {len(left_out)} {ARTIFACT_NAME} in the dir that this multirun did not write left out "
             f"({listed(left_out)})" if left_out else "")
          + (f"; {counted(len(unreadable), 'unreadable ' + ARTIFACT_NAME)} left out ({listed(unreadable)}: "
             "run again to regenerate)" if unreadable else ""))
    return written
