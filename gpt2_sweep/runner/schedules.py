"""Which settings (temperature, nucleus, top_k, min_p) each sample of a sweep gets."""
import itertools
import math
from dataclasses import dataclass, fields

import numpy as np

SCHEDULES = ("paired", "grid")
BOTH_OFF_WARNING = (
    "No sweep is on: the {num_samples} samples share their settings and one random stream, so they are "
    "identical; sampler=temperature, sampler=nucleus or sampler=both (or sampler.top_k=true, "
    "sampler.min_p=true) sweeps them."
)
BOTH_ON_PAIRED_WARNING = (
    "Both sweeps are on: sample i pairs the i-th temperature with the i-th nucleus value "
    "(sampler.schedule=grid takes every combination)."
)
SEVERAL_PAIRED_WARNING = (
    "{count} sweeps are on ({names}): sample i pairs the i-th value of each "
    "(sampler.schedule=grid takes every combination)."
)


@dataclass(frozen=True)
class Setting:
    """One sample's settings; the defaults are neutral (they change nothing). A new axis is a field
    here, a filter in sampling.kept_in_order and its keys in conf/sampler/default.yaml."""

    temperature: float = 1.0
    nucleus: float = 1.0
    top_k: int = 0      # 0 keeps every token
    min_p: float = 0.0


AXES = tuple(field.name for field in fields(Setting))
NEUTRAL = Setting()
INTEGER_AXES = ("top_k",)


def axis(name: str, enabled: bool, value_range, count: int, fixed) -> list:
    """linspace(start, end, count) when the sweep is on (rounded half up to integers for top_k:
    22.5 gives 23), else the fixed value once.

    Values are rounded to 12 significant digits (0.4, not 0.39999999999999997): the samplers work
    in float32, which cannot tell the two apart.
    """
    if not enabled:
        return [fixed]
    start, end = value_range
    if name in INTEGER_AXES:
        return [math.floor(float(f"{v:.12g}") + 0.5) for v in np.linspace(start, end, count)]
    return [float(f"{v:.12g}") for v in np.linspace(start, end, count)]


def sweep_settings(sweeps: dict, ranges: dict, values: dict, num_samples: int,
                   schedule: str = "paired") -> tuple[list[Setting], list[str]]:
    """The settings of every sample, in order, and the warnings the choice deserves.

    sweeps, ranges and values map an axis name (AXES) to whether it is swept, its schedule's end
    points, and its value when not swept; missing axes are not swept and neutral."""
    swept = [name for name in AXES if sweeps.get(name)]
    fixed = {name: values.get(name, getattr(NEUTRAL, name)) for name in AXES}
    if not swept:  # what the original script did, whatever the schedule
        notes = [BOTH_OFF_WARNING.format(num_samples=num_samples)] if num_samples > 1 else []
        return [Setting(**fixed)] * num_samples, notes
    columns = [axis(name, True, ranges[name], num_samples, None) for name in swept]
    if schedule == "paired":
        combinations = list(zip(*columns))
        notes = [] if len(swept) == 1 else [
            BOTH_ON_PAIRED_WARNING if swept == ["temperature", "nucleus"]
            else SEVERAL_PAIRED_WARNING.format(count=len(swept), names=", ".join(swept))]
    else:
        combinations, notes = list(itertools.product(*columns)), []
    return [Setting(**{**fixed, **dict(zip(swept, combination))}) for combination in combinations], notes


def settings_in_use(settings: list[Setting], sweeps: dict) -> list[str]:
    """The axes an artifact's entries name: temperature and nucleus always (the original keys), the
    others where swept or set to a value that is not neutral."""
    return [name for name in AXES if name in ("temperature", "nucleus") or sweeps.get(name)
            or any(getattr(s, name) != getattr(NEUTRAL, name) for s in settings)]
