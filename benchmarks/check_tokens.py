"""Checks each token the runner's loops pick on a device against the sampling rule in float64.

Both loops run as the runner runs them (bf16 weights on a GPU, float32 sampling arithmetic): the
generic loop (1,024 candidates, else a full sort) and the static loop (native forward, the sampler of
runtime.sampler, a row per --samplers value, run eagerly; on CUDA, or with --compiled, also the whole
step compiled (and on CUDA replayed from CUDA graphs), whose tokens are compared with the eager run's:
the compiled forward rounds differently, in bf16 by up to a unit in the last place of a logit, so a
row may part from the eager run where its u or nucleus value lies near a boundary. At each row's
first parting, the compiled pick must be one the float64 rule makes from the eager run's logits
there (the same context up to that step), each moved by at most --compiled-ulps units in the last
place of the largest logit). Every step's logits are recorded; on the CPU, in float64, the check then
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
sampler anywhere, or a compiled parting that rounding within --compiled-ulps cannot explain.
"""
import argparse
import math
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gpt2_sweep  # noqa: E402,F401 - sets MKL_CBWR before torch runs MKL
import torch  # noqa: E402

from benchmarks.common import DTYPES, RowLog, benchmark_model, start_token  # noqa: E402
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


def logit_slack(logits: torch.Tensor, ulps: float) -> float:
    """How far a logit of this dtype may move by rounding differently: `ulps` units in the last place
    of the largest logit (bf16 has 8 significant bits: 2**-6 at logits between 2 and 4)."""
    largest = float(logits.float().abs().max())
    if largest == 0:
        return 0.0
    return ulps * torch.finfo(logits.dtype).eps * 2.0 ** math.floor(math.log2(largest))


def compiled_pick_possible(logits, temperature, nucleus, uniform, token, slack, tolerance) -> bool:
    """Whether the rule could pick `token` (one row) from logits each moved by at most `slack`: the
    token's interval of the cumulative mass, at its lowest start and its highest end over such moves
    (tokens within 2 x slack of its logit may rank either side of it), holds u within `tolerance`,
    and the nucleus can keep it. Greedy (T = 0): its logit within 2 x slack of the largest."""
    logits = logits.double().cpu().reshape(-1)
    own = logits[token]
    if temperature == 0:
        return bool(own >= logits.max() - 2 * slack)
    scaled, shift = (logits - logits.max()) / temperature, slack / temperature
    weights, weight = scaled.exp(), float(scaled[token].exp())
    surely_above = scaled > scaled[token] + 2 * shift
    maybe_above = (scaled >= scaled[token] - 2 * shift) & (torch.arange(len(logits)) != token)
    before_least = float(weights[surely_above].sum()) * math.exp(-shift)
    start_lowest = before_least / (before_least + float(weights[~surely_above].sum()) * math.exp(shift))
    before_most = float(weights[maybe_above].sum()) * math.exp(shift)
    rest_least = float(weights[~maybe_above].sum() - weight) * math.exp(-shift)
    through_most = before_most + weight * math.exp(shift)
    # With the nucleus on, the kept mass divides: the end may then reach 1 (the token last kept).
    end_highest = 1.0 if nucleus < 1 else through_most / (through_most + max(rest_least, 0.0))
    keepable = nucleus >= 1 or start_lowest < nucleus + tolerance
    return keepable and start_lowest - tolerance <= uniform <= end_highest + tolerance


def compiled_partings(compiled_tokens, eager_tokens, recorded, temperatures, nuclei, uniforms, ulps, tolerance):
    """Where the compiled run's rows part from the eager run's: (rows parted, how many of their first
    partings the rule cannot explain from the eager run's recorded logits at that step, the same
    context up to there, each logit moved by at most `ulps` of rounding)."""
    parted = compiled_tokens.cpu() != eager_tokens.cpu()
    rows = parted.any(dim=-1).nonzero().flatten().tolist()
    unexplained = 0
    for row in rows:
        step = int(parted[row].to(torch.uint8).argmax())
        logits = recorded[step]
        logits = logits[0] if len(logits) == 1 else logits[row]  # the prefill has one row
        unexplained += not compiled_pick_possible(logits, float(temperatures[row]), float(nuclei[row]),
                                                  float(uniforms[step]), int(compiled_tokens[row, step]),
                                                  logit_slack(logits, ulps), tolerance)
    return rows, unexplained


def check(lm, batch, new, tolerance, device, loop="dynamic", sampler="auto", compiled=None, compiled_ulps=2.0):
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
              "compiled_rows_parted": None, "compiled_partings_unexplained": None,
              "smallest_margin_of_a_difference": None}
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
            rows, unexplained = compiled_partings(replayed.tokens, generated.tokens, recorded, temperatures, nuclei,
                                                  uniforms, compiled_ulps, tolerance)
            counts["compiled_rows_parted"], counts["compiled_partings_unexplained"] = len(rows), unexplained
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
    parser.add_argument("--compiled-ulps", type=float, default=2.0,
                        help="a compiled pick must be one the rule makes from the eager logits each moved by "
                             "this many units in the last place of the largest (the compiled forward rounds "
                             "differently)")
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
    log = RowLog(output, {"model": name, "card": card, "torch": torch.__version__, "dtype": args.dtype,
                          "new_tokens": args.new, "tolerance": args.tolerance, "compiled_ulps": args.compiled_ulps})
    for loop in args.loops.split(","):
        for sampler in args.samplers.split(",") if loop == "static" else ["auto"]:
            for batch in args.batches.split(","):
                log.add(check(lm, int(batch), args.new, args.tolerance, device, loop, sampler, args.compiled,
                              args.compiled_ulps))
    rows = log.rows
    print(f"\n{name}; {card}, torch {torch.__version__}, {args.dtype}, {args.new} new tokens, "
          f"tolerance {args.tolerance:g}, compiled {args.compiled_ulps:g} ulps\n")
    print(f"{'loop':>8} {'sampler':>8} {'batch':>6} {'picks':>8} {'agree':>8} {'differ <= tol':>14} {'differ > tol':>13} "
          f"{'fast != full':>13} {'compiled rows parted (unexplained)':>35}")
    for row in rows:
        parted = row["compiled_rows_parted"]
        parted = "-" if parted is None else f"{parted} ({row['compiled_partings_unexplained']})"
        print(f"{row['loop']:>8} {row['sampler'] or '-':>8} {row['batch']:>6} {row['picks']:>8} {row['agree']:>8} "
              f"{row['differ_within_tolerance']:>14} {row['differ_beyond_tolerance']:>13} "
              f"{row['fast_vs_full_sort_differ']:>13} {parted:>35}")
    print(f"\nwritten to {output}")
    failed = any(row["differ_beyond_tolerance"] or row["fast_vs_full_sort_differ"]
                 or row["compiled_partings_unexplained"] for row in rows)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
