"""The one bootstrap, and the tests every table uses.

Every CI is a percentile bootstrap (95 % by default) that resamples **patients, with
replacement, within each class** (a patient's class is the label of its first image): a
patient's images enter or leave a resample together, so images of one patient never count as
independent evidence, and every resample keeps the test set's class sizes in patients. A
resample is represented as integer weights on the images (how often its patient was drawn),
so any mean or ratio statistic is a matrix product (:func:`bootstrap_weights`). Where each
image is its own unit (segmentation test sets), the image id is the patient.
"""

from __future__ import annotations

import numpy as np


def bootstrap_weights(patients, labels, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, n_images) integer weights: patients resampled with replacement within class.

    A patient's class is the label of its first image; each class keeps its number of
    patients in every resample. Weight = how many times the image's patient was drawn.
    """
    patients = np.asarray(patients).astype(str)
    labels = np.asarray(labels).astype(str)
    n = len(patients)
    rng = np.random.default_rng(seed)
    unique, first, inverse = np.unique(patients, return_index=True, return_inverse=True)
    patient_class = labels[first]
    patient_counts = np.zeros((n_boot, len(unique)), dtype=np.int64)
    for cls in np.unique(patient_class):
        members = np.flatnonzero(patient_class == cls)
        draws = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)), size=n_boot)
        patient_counts[:, members] = draws
    weights = patient_counts[:, inverse] if n else np.zeros((n_boot, 0), dtype=np.int64)
    return weights


def percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def ratio_ci(numerator, denominator, weights: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Point value sum(num)/sum(den) and its bootstrap CI under `weights` (n_boot, n)."""
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = num.sum() / den.sum() if den.sum() > 0 else float("nan")
        boot = (weights @ num) / (weights @ den)
    return (float(point), *percentile_ci(boot, level))


def mean_ci(values, weights: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-image `values` with its bootstrap CI."""
    values = np.asarray(values, dtype=float)
    return ratio_ci(values, np.ones_like(values), weights, level)


def accuracy_ci(true, predicted, patients, n_boot: int = 1000, seed: int = 0, level: float = 0.95):
    """(accuracy, CI low, CI high) with patients resampled within class."""
    true = np.asarray(true).astype(str)
    correct = (true == np.asarray(predicted).astype(str)).astype(float)
    return mean_ci(correct, bootstrap_weights(patients, true, n_boot, seed), level)


def paired_difference_ci(correct_a, correct_b, weights: np.ndarray, level: float = 0.95):
    """Accuracy of b minus accuracy of a on the same images, with a paired bootstrap CI
    (the same resample for both)."""
    a = np.asarray(correct_a, dtype=float)
    b = np.asarray(correct_b, dtype=float)
    return mean_ci(b - a, weights, level)


def mcnemar_exact(correct_a, correct_b) -> float:
    """Exact (binomial) two-sided McNemar p-value of two classifiers on the same images."""
    from scipy.stats import binomtest

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels ``multipletests``); NaN entries stay NaN and are
    not counted as tests."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = multipletests(p[finite], method="holm")[1]
    return out


def weighted_auroc(y, score, weights) -> np.ndarray:
    """AUROC of binary `y` (1 = positive) under each row of `weights` (n_boot, n), vectorised;
    ties count 1/2 (equal to sklearn's ``roc_auc_score(..., sample_weight=w)``)."""
    y = np.asarray(y).astype(bool)
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    unique, inverse = np.unique(np.asarray(score, dtype=float), return_inverse=True)
    onehot = np.zeros((len(y), len(unique)))
    onehot[np.arange(len(y)), inverse] = 1.0
    pos = (weights * y) @ onehot          # (n_boot, U) positive weight per distinct score
    neg = (weights * ~y) @ onehot
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each score
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))


def accuracy_power(n_patients: int, chance: float, margin: float, level: float = 0.95) -> dict:
    """How large an accuracy a test set of `n_patients` can tell apart from chance + margin.

    Normal approximation of a binomial proportion with the patients as the effective sample
    size. That is conservative for the patient bootstrap within class (fixed class sizes remove
    the between-class variance, and a patient's images vary less than independent ones), unless
    patients have very unequal numbers of images.
    With z the normal quantile for `level` and t = chance + margin:

    - ``half_width`` = z·√(t(1−t)/n): the CI half-width of an accuracy at t;
    - ``detectable_accuracy``: the smallest accuracy a whose CI low a − z·√(a(1−a)/n) reaches t,
      the larger root of (1 + z²/n)a² − (2t + z²/n)a + t² = 0 (the Wilson upper bound of t).
    """
    from statistics import NormalDist

    threshold = chance + margin
    if not (n_patients >= 1 and 0 <= threshold < 1):
        return dict(threshold=threshold, half_width=float("nan"), detectable_accuracy=float("nan"))
    z = NormalDist().inv_cdf((1 + level) / 2)
    k = z * z / n_patients
    half_width = z * np.sqrt(threshold * (1 - threshold) / n_patients)
    b = 2 * threshold + k
    detectable = (b + np.sqrt(b * b - 4 * (1 + k) * threshold ** 2)) / (2 * (1 + k))
    return dict(threshold=threshold, half_width=float(half_width), detectable_accuracy=float(detectable))
