"""The run's settings read from the composed config, each checked, with one-line errors."""
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .prompts import PromptSetOptions, read_prompt_set_options
from .schedules import AXES, NEUTRAL, SCHEDULES

SAMPLER_SETTINGS = ("auto", "sort", "search", "triton")  # runtime.sampler (decoding/samplers.py)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def boolean(value, key: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{key}={value!r} is not allowed: true or false")
    return value


def value_range(value, key: str, upper: float, integer: bool = False) -> tuple:
    allowed = "[0, inf)" if upper == math.inf else f"[0, {upper:g}]"
    kind = "integers" if integer else "numbers"
    if (not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2
            or not all((is_int(v) if integer else is_number(v)) and 0 <= v <= upper for v in value)):
        shown = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
        raise UsageError(f"{key}={shown!r} is not allowed: two {kind} [start, end], each in {allowed}")
    return (int(value[0]), int(value[1])) if integer else (float(value[0]), float(value[1]))


@dataclass(frozen=True)
class RunOptions:
    num_samples: int
    max_length: int
    prompt: str | None
    seed: int
    batch_size: int | None
    stop_at_eos: bool
    overwrite: bool
    output_json: Path | None
    sweeps: dict        # per axis of schedules.AXES: swept or not
    ranges: dict        # per axis: its schedule's end points
    values: dict        # per axis: every sample's value when it is not swept
    schedule: str
    compile: str | bool
    batch_invariant: bool
    print_samples: int
    sampler: str = "auto"
    prompt_set: PromptSetOptions | None = None  # prompts=FILE
    draws: int = 1
    max_new_tokens: int | None = None

    @property
    def study(self) -> bool:
        """A prompt set or several draws: the artifact of a study (samples.parquet beside samples.json)."""
        return self.prompt_set is not None or self.draws > 1

    @property
    def temperature(self) -> bool:
        return self.sweeps["temperature"]

    @property
    def nucleus(self) -> bool:
        return self.sweeps["nucleus"]


# Per axis: the largest value allowed, and whether values are integers.
AXIS_BOUNDS = {"temperature": (math.inf, False), "nucleus": (1.0, False), "top_k": (math.inf, True),
               "min_p": (1.0, False)}


def fixed_value(value, key: str, upper: float, integer: bool):
    if integer:
        if not is_int(value) or value < 0:
            raise UsageError(f"{key}={value!r} is not allowed: an integer >= 0 (0 keeps every token)")
        return value
    if not is_number(value) or not 0 <= value <= upper:
        allowed = "[0, inf)" if upper == math.inf else f"[0, {upper:g}]"
        raise UsageError(f"{key}={value!r} is not allowed: a number in {allowed}")
    return float(value)


def sampler_axes(sampler) -> tuple[dict, dict, dict]:
    """sweeps, ranges and values of every axis, each checked."""
    sweeps, ranges, values = {}, {}, {}
    for name in AXES:
        upper, integer = AXIS_BOUNDS[name]
        sweeps[name] = boolean(sampler.get(name, False), f"sampler.{name}")
        ranges[name] = value_range(sampler.get(f"{name}_range"), f"sampler.{name}_range", upper, integer)
        values[name] = fixed_value(sampler.get(f"{name}_value", getattr(NEUTRAL, name)), f"sampler.{name}_value",
                                   upper, integer)
    return sweeps, ranges, values


def default_ranges() -> dict:
    """Each axis's schedule end points in the sampler group's default preset."""
    from omegaconf import OmegaConf

    from .keys import CONFIG_DIR

    defaults = OmegaConf.load(CONFIG_DIR / "sampler" / "default.yaml")
    return {name: list(defaults.get(f"{name}_range")) for name in AXES}


def ignored_settings(options: RunOptions) -> list[str]:
    """A warning per setting the run does not use: an axis's value where the axis is swept, its
    range where it is not (each only where it differs from the default, i.e. someone set it)."""
    warnings, ranges = [], default_ranges()
    for name in AXES:
        value, value_range = options.values[name], list(options.ranges[name])
        if options.sweeps[name] and value != getattr(NEUTRAL, name):
            warnings.append(f"sampler.{name}_value={value:g} is not used: {name} is swept, over "
                            f"sampler.{name}_range={value_range}")
        if not options.sweeps[name] and value_range != ranges[name]:
            warnings.append(f"sampler.{name}_range={value_range} is not used: {name} is not swept "
                            f"(sampler.{name}=true sweeps it; every sample gets sampler.{name}_value={value:g})")
    return warnings


def read_options(cfg) -> RunOptions:
    """Check every top-level and sampler option; raise UsageError naming the first bad one."""
    num_samples = cfg.get("num_samples")
    if not is_int(num_samples) or num_samples < 1:
        raise UsageError(f"num_samples={num_samples!r} is not allowed: an integer >= 1")
    max_length = cfg.get("max_length")
    if not is_int(max_length) or max_length < 2:
        raise UsageError(f"max_length={max_length!r} is not allowed: an integer above the prompt's "
                         "length in tokens (at least 2)")
    batch_size = cfg.get("batch_size")
    if batch_size is not None and (not is_int(batch_size) or batch_size < 1):
        raise UsageError(f"batch_size={batch_size!r} is not allowed: null (128 on the CPU, what fits on a GPU) or an integer >= 1")
    seed = cfg.get("seed")
    if not is_int(seed) or not 0 <= seed < 2**64:
        raise UsageError(f"seed={seed!r} is not allowed: an integer from 0 to 2**64 - 1")
    prompt = cfg.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise UsageError(f"prompt={prompt!r} is not allowed: text (quote it, e.g. prompt='\"{prompt}\"') or null")
    output_json = cfg.get("output_json")
    if output_json is not None and (not isinstance(output_json, str) or not output_json.strip()):
        raise UsageError(f"output_json={output_json!r} is not allowed: a file path or null")
    compile_setting = cfg.get("runtime", {}).get("compile", "auto")
    if not (compile_setting == "auto" or isinstance(compile_setting, bool)):
        raise UsageError(f"runtime.compile={compile_setting!r} is not allowed: auto, true or false")
    sampler_setting = cfg.get("runtime", {}).get("sampler", "auto")
    if sampler_setting not in SAMPLER_SETTINGS:
        raise UsageError(f"runtime.sampler={sampler_setting!r} is not allowed: one of {', '.join(SAMPLER_SETTINGS)}")
    print_samples = cfg.get("print_samples")
    if not is_int(print_samples) or print_samples < 0:
        raise UsageError(f"print_samples={print_samples!r} is not allowed: an integer >= 0 (0 prints none)")
    sampler = cfg.sampler
    schedule = sampler.get("schedule", "paired")
    if schedule not in SCHEDULES:
        raise UsageError(f"sampler.schedule={schedule!r} is not allowed: one of {', '.join(SCHEDULES)}")
    sweeps, ranges, values = sampler_axes(sampler)
    prompt_set = read_prompt_set_options(cfg)
    draws = cfg.get("draws", 1)
    if not is_int(draws) or draws < 1:
        raise UsageError(f"draws={draws!r} is not allowed: an integer >= 1 (independent draws per prompt)")
    max_new_tokens = cfg.get("max_new_tokens")
    if max_new_tokens is not None and (not is_int(max_new_tokens) or max_new_tokens < 1):
        raise UsageError(f"max_new_tokens={max_new_tokens!r} is not allowed: an integer >= 1, or null "
                         "(then max_length, the prompt's tokens included, sets the length)")
    if prompt_set is not None and max_new_tokens is None:
        raise UsageError(f"{prompt_set.shown} needs max_new_tokens=N, the tokens generated after each "
                         "prompt: max_length counts the prompt's tokens, and the set's prompts differ in length")
    if output_json and (prompt_set is not None or draws > 1):
        raise UsageError(f"output_json={output_json!r} is for runs of one prompt and one draw: a study's "
                         "samples go to samples.parquet beside samples.json in the run dir")
    return RunOptions(
        num_samples=num_samples,
        max_length=max_length,
        prompt=prompt,
        seed=seed,
        batch_size=batch_size,
        stop_at_eos=boolean(cfg.get("stop_at_eos", False), "stop_at_eos"),
        overwrite=boolean(cfg.get("overwrite", False), "overwrite"),
        output_json=Path(output_json).expanduser() if output_json else None,
        sweeps=sweeps,
        ranges=ranges,
        values=values,
        schedule=schedule,
        compile=compile_setting,
        batch_invariant=boolean(cfg.get("runtime", {}).get("batch_invariant", False), "runtime.batch_invariant"),
        print_samples=print_samples,
        sampler=sampler_setting,
        prompt_set=prompt_set,
        draws=draws,
        max_new_tokens=max_new_tokens,
    )
