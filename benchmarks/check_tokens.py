"""Checks each token the runner's loops pick on a device against the sampling rule in float64.

Both loops run as the runner runs them (bf16 weights on a GPU, float32 sampling arithmetic): the
generic loop (1,024 candidates, else a full sort) and the static loop (native forward, the sampler of
runtime.sampler, a row per --samplers value, run eagerly; on CUDA, or with --compiled, also the whole
step compiled (and on CUDA replayed from CUDA graphs), whose tokens are compared with the eager run's:
the compiled forward rounds differently, in bf16 by up to a unit in the last place of a logit, so a
row may part from the eager run where its u or nucleus value lies near a boundary. At each row's
first parting, the compiled pick must lie within --compiled-tolerance of what the float64 rule picks
from the eager run's logits there (the same context up to that step): u within that distance of the
pick's interval of the cumulative mass, the nucleus value of the mass before it). Every step's logits are recorded; on the CPU, in float64, the check then
recomputes from those logits the distribution the rule defines (temperature, nucleus, descending
order with ties by the lower id, inverse CDF at the step's shared u) and compares its pick with the
loop's. A pick may differ only where u or the nucleus value lies within --tolerance of a cumulative
boundary, where float32 rounding legitimately decides. It also re-picks every step with the whole
vocabulary sorted on the device and counts where that differs from the loop's own sampler (integer
masses make them agree exactly, on every device: the count must be 0).

    python benchmarks/check_tokens.py --device cuda --dtype bf16 --batches 4,64,512 --new 128
    python benchmarks/check_tokens.py --device cuda --loops static --samplers sort,search,triton
    python benchmarks/check_tokens.py --device cpu --dtype fp32 --batches 4 --new 20

Prints each row as it is done and a table, writes JSON (--json, default
benchmarks/check-tokens-<device>.json; rewritten after each row, so a run cut short keeps its rows) and
exits 1 if any pick differs from the float64 rule beyond the tolerance, the full sort from the loop's
sampler anywhere, or a compiled pick from the float64 rule's by more than --compiled-tolerance.
"""
import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gpt2_sweep  # noqa: E402,F401 - sets MKL_CBWR before torch runs MKL
import torch  # noqa: E402

from benchmarks.common import DTYPES, benchmark_model, start_token  # noqa: E402
from gpt2_sweep.decoding.engines import generate_static  # noqa: E402
from gpt2_sweep.decoding.generation import CausalLM, generate  # noqa: E402
from gpt2_sweep.decoding.native_models import native_model  # noqa: E402
from gpt2_sweep.decoding.prompts import one_prompt  # noqa: E402
from gpt2_sweep.decoding.sampling import RowSettings, sample_step, shared_uniforms  # noqa: E402


class RecordingLM(CausalLM):
    """A CausalLM that keeps every step's logits as the sampler received them (in host memory:
    batch 512 x 256 steps of GPT-2 logits are 13 GB in bf16)."""

    def __init__(self, model):
        super().__init__(model)
        self.steps = []

    def last_logits(self, input_ids, cache):
        logits = super().last_logits(input_ids, cache)
        self.steps.append(logits.cpu())
        return logits


class RecordingNative:
    """A native forward (static loop) that keeps every step's logits in host memory, as RecordingLM."""

    def __init__(self, native):
        self.native, self.steps = native, []

    def __getattr__(self, name):
        return getattr(self.native, name)

    def __call__(self, ids, columns, cache, length, first_row=0):
        logits = self.native(ids, columns, cache, length, first_row)
        self.steps.append(logits.cpu())
        return logits


def reference_picks(logits, temperatures, nuclei, uniform):
    """The rule in float64 on the CPU: (tokens, margins), where a row's margin is the distance of u
    or of its nucleus value to the nearest cumulative boundary that could change its pick."""
    logits = logits.double().cpu()
    temperatures, nuclei = temperatures.double().unsqueeze(-1), nuclei.double().unsqueeze(-1)
    greedy = temperatures == 0
    scaled = (logits - logits.amax(-1, keepdim=True)) / torch.where(greedy, 1.0, temperatures)
    probs = torch.where(greedy, torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0),
                        torch.softmax(scaled, dim=-1))
    values, ids = torch.sort(probs, dim=-1, descending=True, stable=True)
    before = torch.cumsum(values, -1) - values  # the mass strictly before each position
    position = torch.arange(values.shape[-1])
    # A token is kept while the mass before it is below the nucleus; the top token always.
    kept = torch.where(nuclei < 1, (before < nuclei).sum(-1, keepdim=True).clamp(min=1), values.shape[-1])
    is_kept = position < kept
    cumulative = torch.cumsum(values * is_kept, -1) / (values * is_kept).sum(-1, keepdim=True)
    above = (cumulative > uniform) & is_kept
    picked = torch.where(above.any(-1, keepdim=True), above.to(torch.uint8).argmax(-1, keepdim=True), kept - 1)
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    u_margin = torch.where(is_kept, (cumulative - uniform).abs(), inf).amin(-1)
    decides_nucleus = (position >= 1) & (position <= kept) & (nuclei < 1)  # kept ones and the first left out
    nucleus_margin = torch.where(decides_nucleus, (before - nuclei).abs(), inf).amin(-1)
    return ids.gather(-1, picked).squeeze(-1), torch.minimum(u_margin, nucleus_margin)


def pick_distance(logits, temperature, nucleus, uniform, token):
    """How far the float64 rule is from picking `token` (one row): the distance from u to the token's
    interval of the kept cumulative mass, and, where the rule leaves the token out, from the nucleus
    value to the mass before it; 0 where the rule picks it."""
    logits = logits.double().cpu().reshape(-1)
    if temperature == 0:
        probs = torch.zeros_like(logits).scatter_(0, logits.argmax().reshape(1), 1.0)
    else:
        probs = torch.softmax((logits - logits.max()) / temperature, dim=-1)
    values, ids = torch.sort(probs, descending=True, stable=True)
    before = torch.cumsum(values, -1) - values
    rank = int((ids == token).nonzero())
    kept = int((before < nucleus).sum().clamp(min=1)) if nucleus < 1 else len(values)
    outside = max(0.0, float(before[rank]) - nucleus) if rank >= kept else 0.0
    kept = max(kept, rank + 1)  # as though the nucleus reached the token
    total = float(values[:kept].sum())
    low, high = float(before[rank]) / total, float(before[rank] + values[rank]) / total
    return max(outside, low - uniform, uniform - high, 0.0)


def compiled_partings(compiled_tokens, eager_tokens, recorded, temperatures, nuclei, uniforms):
    """Where the compiled run's rows part from the eager run's: (rows parted, at each row's first
    parting step how far the float64 rule is from the compiled pick, from the eager run's recorded
    logits there: the same context up to that step)."""
    parted = compiled_tokens.cpu() != eager_tokens.cpu()
    rows = parted.any(dim=-1).nonzero().flatten().tolist()
    distances = []
    for row in rows:
        step = int(parted[row].to(torch.uint8).argmax())
        logits = recorded[step]
        logits = logits[0] if len(logits) == 1 else logits[row]  # the prefill has one row
        distances.append(pick_distance(logits, float(temperatures[row]), float(nuclei[row]), float(uniforms[step]),
                                       int(compiled_tokens[row, step])))
    return rows, distances


def check(lm, batch, new, tolerance, device, loop="dynamic", sampler="auto", compiled=None,
          compiled_tolerance=0.05):
    """Counts for one batch of `loop` ("dynamic": lm is a RecordingLM; "static": its model's native
    forward and runtime.sampler=`sampler`, run eagerly and checked; with `compiled` (default: on CUDA)
    also compiled, and on CUDA replayed from CUDA graphs, its tokens compared with the eager run's)."""
    start = start_token(lm.model)
    temperatures = torch.linspace(0.0, 1.5, batch)
    nuclei = torch.linspace(0.05, 1.0, batch).flip(0)
    uniforms = shared_uniforms(0, new)
    settings = RowSettings(temperatures, nuclei)
    prompts, row_uniforms = one_prompt([start], uniforms, batch, new)
    arguments = (prompts, settings, row_uniforms, new)
    counts = {"loop": loop, "sampler": sampler if loop == "static" else None, "batch": batch, "picks": 0, "agree": 0, "differ_within_tolerance": 0,
              "differ_beyond_tolerance": 0, "fast_vs_full_sort_differ": 0, "graph_vs_eager_differ": None,
              "compiled_rows_parted": None, "compiled_partings_beyond_tolerance": None,
              "largest_distance_of_a_compiled_pick": None, "smallest_margin_of_a_difference": None}
    if loop == "static":
        cuda = device == "cuda"
        recorder = RecordingNative(native_model(lm.model))
        # Recorded eagerly (each (sampler, batch) then compiles once, for the compiled run below: a
        # compile of the whole step takes about 35 s on an H200); the compiled run's picks are
        # compared with these.
        generated = generate_static(lm.model, *arguments, compiled=False, native=recorder, sampler=sampler)
        recorded = recorder.steps
        if cuda if compiled is None else compiled:
            replayed = generate_static(lm.model, *arguments, compiled=True, cuda_graphs=cuda, sampler=sampler)
            counts["graph_vs_eager_differ"] = int((replayed.tokens != generated.tokens).sum())
            rows, distances = compiled_partings(replayed.tokens, generated.tokens, recorded, temperatures, nuclei,
                                                uniforms)
            counts["compiled_rows_parted"] = len(rows)
            counts["compiled_partings_beyond_tolerance"] = sum(distance > compiled_tolerance for distance in distances)
            counts["largest_distance_of_a_compiled_pick"] = max(distances, default=None)
    else:
        lm.steps = []
        generated = generate(lm, *arguments)
        recorded = lm.steps
    for step, logits in enumerate(recorded[:new]):
        logits = logits.expand(batch, -1) if len(logits) == 1 else logits[:batch]  # the prefill has one row
        picked = generated.tokens[:, step].cpu()
        full = sample_step(logits.to(device), settings.to(device), uniforms[step]).tokens.cpu()
        counts["fast_vs_full_sort_differ"] += int((full != picked).sum())
        expected, margins = reference_picks(logits.to(torch.promote_types(logits.dtype, torch.float32)),
                                            temperatures, nuclei, float(uniforms[step]))
        differ = picked != expected
        counts["picks"] += batch
        counts["agree"] += int((~differ).sum())
        counts["differ_within_tolerance"] += int((differ & (margins <= tolerance)).sum())
        counts["differ_beyond_tolerance"] += int((differ & (margins > tolerance)).sum())
        if differ.any():
            smallest = float(margins[differ].min())
            previous = counts["smallest_margin_of_a_difference"]
            counts["smallest_margin_of_a_difference"] = smallest if previous is None else min(previous, smallest)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", default="4,64")
    parser.add_argument("--new", type=int, default=64, help="new tokens per sample")
    parser.add_argument("--dtype", default="bf16" if torch.cuda.is_available() else "fp32", choices=sorted(DTYPES))
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="a pick may differ from float64's where u or the nucleus is this close to a boundary")
    parser.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=None,
                        help="also run the static loop compiled and compare (default: on CUDA, with CUDA graphs)")
    parser.add_argument("--compiled-tolerance", type=float, default=0.05,
                        help="a compiled pick may lie this far from the float64 rule's (in cumulative mass: "
                             "a bf16 logit's last bit moves a probability by up to a few percent)")
    parser.add_argument("--model-dir", help="a save_pretrained directory instead of random GPT-2 weights")
    parser.add_argument("--loops", default="dynamic,static")
    parser.add_argument("--samplers", default="auto", help="the static loop's runtime.sampler values: rows each")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device, dtype = args.device, DTYPES[args.dtype]
    model = benchmark_model(args.model_dir, device, dtype)
    lm = RecordingLM(model)
    card = torch.cuda.get_device_name() if device == "cuda" else f"{platform.machine()} CPU"
    name = args.model_dir or "GPT-2 124M shape, random weights"
    output = args.json or Path(__file__).with_name(f"check-tokens-{device}.json")
    rows = []
    for loop in args.loops.split(","):
        for sampler in args.samplers.split(",") if loop == "static" else ["auto"]:
            for batch in args.batches.split(","):
                rows.append(check(lm, int(batch), args.new, args.tolerance, device, loop, sampler, args.compiled,
                                  args.compiled_tolerance))
                print(json.dumps(rows[-1]), flush=True)
                output.write_text(json.dumps({"model": name, "card": card, "torch": torch.__version__,
                                              "dtype": args.dtype, "new_tokens": args.new, "tolerance": args.tolerance,
                                              "compiled_tolerance": args.compiled_tolerance,
                                              "date": datetime.now(timezone.utc).isoformat(), "rows": rows},
                                             indent=2) + "\n")
    print(f"\n{name}; {card}, torch {torch.__version__}, {args.dtype}, {args.new} new tokens, "
          f"tolerance {args.tolerance:g}, compiled {args.compiled_tolerance:g}\n")
    print(f"{'loop':>8} {'sampler':>8} {'batch':>6} {'picks':>8} {'agree':>8} {'differ <= tol':>14} {'differ > tol':>13} "
          f"{'fast != full':>13} {'compiled rows parted (> tol)':>29}")
    for row in rows:
        parted = row["compiled_rows_parted"]
        parted = "-" if parted is None else f"{parted} ({row['compiled_partings_beyond_tolerance']})"
        print(f"{row['loop']:>8} {row['sampler'] or '-':>8} {row['batch']:>6} {row['picks']:>8} {row['agree']:>8} "
              f"{row['differ_within_tolerance']:>14} {row['differ_beyond_tolerance']:>13} "
              f"{row['fast_vs_full_sort_differ']:>13} {parted:>29}")
    print(f"\nwritten to {output}")
    failed = any(row["differ_beyond_tolerance"] or row["fast_vs_full_sort_differ"]
                 or row["compiled_partings_beyond_tolerance"] for row in rows)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
