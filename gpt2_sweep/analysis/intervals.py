"""Means over samples with 95% cluster-bootstrap intervals: prompts are resampled, not samples."""
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float        # over all samples with a value (nan: none)
    low: float         # the bootstrap percentiles; nan where fewer than two clusters have values
    high: float


def cluster_bootstrap(values: np.ndarray, clusters: np.ndarray, resamples: int = RESAMPLES,
                      seed: int = 0, confidence: float = CONFIDENCE) -> list[Interval]:
    """For each column of `values` (samples x metrics; nan: missing), the mean over the samples with
    a value, and a percentile bootstrap interval around it that resamples CLUSTERS (the samples of
    one prompt, `clusters[i]` naming sample i's): each resample draws as many clusters as there are,
    with replacement, and takes all their samples; its mean is over the samples it took, so a cluster
    weighs by its number of samples, as in the mean. Vectorised: one (resamples x clusters) matrix of
    how often each cluster was drawn, from `seed`."""
    values = np.asarray(values, dtype=float)
    values = values.reshape(len(values), -1)
    names, cluster = np.unique(np.asarray(clusters), return_inverse=True)
    present = ~np.isnan(values)
    sums = np.zeros((names.size, values.shape[1]))
    counts = np.zeros((names.size, values.shape[1]))
    np.add.at(sums, cluster.reshape(-1), np.where(present, values, 0.0))
    np.add.at(counts, cluster.reshape(-1), present)
    # a draw of clusters with replacement, counted: multinomial with equal cluster probabilities
    draws = np.random.default_rng(seed).multinomial(names.size, np.full(names.size, 1 / names.size),
                                                   size=resamples)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (draws @ sums) / (draws @ counts)
        pooled = sums.sum(axis=0) / counts.sum(axis=0)
    tail = 100 * (1 - confidence) / 2
    intervals = []
    for column in range(values.shape[1]):
        if np.count_nonzero(counts[:, column]) < 2:
            intervals.append(Interval(float(pooled[column]), np.nan, np.nan))
            continue
        low, high = np.nanpercentile(means[:, column], [tail, 100 - tail])
        intervals.append(Interval(float(pooled[column]), float(low), float(high)))
    return intervals
