"""What a run prints of its samples: some in full, the next one line each, the rest counted."""
import shutil
from pathlib import Path

from ..artifact import sample_settings

# Beyond print_samples, this many samples get one line each; the rest are only counted.
ONE_LINE_SAMPLES = 20
# A one-line preview starts this many tokens before the one where its sample departs from the
# reference sample, which it sets off in these brackets: coupled samples agree up to there.
CONTEXT_TOKENS = 3
DEPARTURE = ("⟨", "⟩")


def print_samples(texts: list[dict], in_full: int, artifact_path: Path, total: int | None = None) -> None:
    """The first `in_full` samples in full, the next ONE_LINE_SAMPLES one line each, then how many
    more the artifact holds (`total` samples; `texts` may hold only the first ones); nothing with in_full=0."""
    if in_full == 0:
        return
    total = len(texts) if total is None else total
    printed_in_full = texts[:in_full]
    for number, sample in enumerate(printed_in_full, start=1):
        print(f"\n--- Sample {number} ({settings_label(sample, ', ')}) ---")
        print(sample["text"])
    print()
    one_line = texts[in_full:in_full + ONE_LINE_SAMPLES]
    if one_line:
        print(f"Samples {in_full + 1} to {in_full + len(one_line)} of {total}, each from just before "
              f"where it departs from the reference sample ({DEPARTURE[0]}the first token that differs"
              f"{DEPARTURE[1]}; print_samples=N prints N in full):")
        print_one_line_each(one_line, in_full + 1)
    rest = total - len(printed_in_full) - len(one_line)
    if rest:
        print(f"... and {rest} more samples in {artifact_path}")


def settings_label(sample: dict, separator: str) -> str:
    """'temperature=0.4, nucleus=0.9' and any other setting, temperature first as on the command line."""
    settings = sample_settings(sample)
    keys = sorted(settings, key=lambda key: (key != "temperature", key != "nucleus"))
    return separator.join(f"{key}={settings[key]:.3g}" if isinstance(settings[key], float)
                          else f"{key}={settings[key]}" for key in keys)


def preview(sample: dict) -> str:
    """The continuation's repr from a few tokens before the one where the sample departs from the
    run's reference sample (metrics.diverges_from), that token set off in DEPARTURE's brackets and
    '…' where the start is cut; the whole continuation where it never departs."""
    strings = sample.get("token_strings")
    position = (sample.get("metrics") or {}).get("diverges_from")
    if not strings or position is None or not 0 <= position < len(strings):
        return repr(sample["continuation"])
    start = max(0, position - CONTEXT_TOKENS)
    opening, closing = DEPARTURE
    text = "".join(strings[start:position]) + opening + strings[position] + closing + "".join(strings[position + 1:])
    return ("…" if start else "") + repr(text)


def print_one_line_each(samples: list[dict], first_number: int) -> None:
    """Number, settings (aligned) and the preview of the continuation, cut to the terminal's width."""
    width = max(60, shutil.get_terminal_size().columns)
    labels = [settings_label(sample, " ") for sample in samples]
    label_width = max(map(len, labels))
    for number, (label, sample) in enumerate(zip(labels, samples), start=first_number):
        line = f"{number:>5}  {label:<{label_width}}  {preview(sample)}"
        print(line if len(line) <= width else line[:width - 1] + "…")
