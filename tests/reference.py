"""A plain, independent statement of the sampling rule in float64, one row at a time."""
import numpy as np

SAFE_MARGIN = 1e-5  # closer than this to a boundary, float32 rounding may decide: not compared


def reference_distribution(logits, temperature: float, nucleus: float, top_k: int = 0, min_p: float = 0.0):
    """(token ids in descending order, their renormalised kept probabilities, the smallest margin
    between the nucleus value and a mass-before, or between min_p times the top probability and a
    probability, that decides whether a token is kept). top_k keeps the first k in that order."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        probs = np.zeros_like(logits)
        probs[int(np.argmax(logits))] = 1.0
    else:
        scaled = logits / temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
    order = sorted(range(len(probs)), key=lambda i: (-probs[i], i))
    kept, mass, margin = [], 0.0, np.inf
    floor = min_p * probs[order[0]]
    for token in order:
        if kept and nucleus < 1:
            margin = min(margin, abs(mass - nucleus))
            if not mass < nucleus:
                break
        if kept and 0 < top_k <= len(kept):
            break
        if kept and min_p > 0:
            margin = min(margin, abs(probs[token] - floor))
            if probs[token] < floor:
                break
        kept.append(token)
        mass += probs[token]
    kept_probs = np.array([probs[t] for t in kept])
    return np.array(kept), kept_probs / kept_probs.sum(), margin


def reference_pick(logits, temperature: float, nucleus: float, uniform: float, top_k: int = 0, min_p: float = 0.0):
    """(the token the rule picks, the distance from u to the nearest cumulative boundary, and the
    filters' margin): a comparison is meaningful when both margins exceed SAFE_MARGIN."""
    tokens, probs, nucleus_margin = reference_distribution(logits, temperature, nucleus, top_k, min_p)
    cumulative = np.cumsum(probs)
    above = np.nonzero(cumulative > uniform)[0]
    position = int(above[0]) if len(above) else len(tokens) - 1
    return int(tokens[position]), float(np.min(np.abs(cumulative - uniform))), nucleus_margin
