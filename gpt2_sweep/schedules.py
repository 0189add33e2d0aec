"""Which temperature and nucleus value each sample of a sweep gets."""
from dataclasses import dataclass

import numpy as np

SCHEDULES = ("paired", "grid")
BOTH_OFF_WARNING = (
    "Neither the temperature nor the nucleus sweep is on: the {num_samples} samples all use temperature 1.0 "
    "and nucleus 1.0 and share one random stream, so they are identical; sampler=temperature, "
    "sampler=nucleus or sampler=both sweeps them."
)
BOTH_ON_PAIRED_WARNING = (
    "Both sweeps are on: sample i pairs the i-th temperature with the i-th nucleus value "
    "(sampler.schedule=grid takes every combination)."
)


@dataclass(frozen=True)
class Setting:
    temperature: float
    nucleus: float


def axis(enabled: bool, value_range, count: int) -> list[float]:
    """linspace(start, end, count) when the sweep is on, else the neutral value 1.0 once.

    Values are rounded to 12 significant digits (0.4, not 0.39999999999999997): the samplers work
    in float32, which cannot tell the two apart.
    """
    if not enabled:
        return [1.0]
    start, end = value_range
    return [float(f"{v:.12g}") for v in np.linspace(start, end, count)]


def sweep_settings(temperature: bool, nucleus: bool, temperature_range, nucleus_range,
                   num_samples: int, schedule: str = "paired") -> tuple[list[Setting], list[str]]:
    """The settings of every sample, in order, and the warnings the choice deserves."""
    temperatures = axis(temperature, temperature_range, num_samples)
    nuclei = axis(nucleus, nucleus_range, num_samples)
    if not (temperature or nucleus):  # what the original script did, whatever the schedule
        notes = [BOTH_OFF_WARNING.format(num_samples=num_samples)] if num_samples > 1 else []
        return [Setting(1.0, 1.0)] * num_samples, notes
    if temperature and nucleus and schedule == "paired":
        return [Setting(t, p) for t, p in zip(temperatures, nuclei)], [BOTH_ON_PAIRED_WARNING]
    return [Setting(t, p) for t in temperatures for p in nuclei], []
