"""The arithmetic of a bottleneck curve: normalisation, the k reaching a fraction of the way
(interpolated in log k), and the bootstrap over contiguous test blocks and seeds."""

from __future__ import annotations

import numpy as np

#: Fewest test samples in one bootstrap block.
MIN_BLOCK_SAMPLES = 10
#: Fewest bootstrap blocks.
MIN_BLOCKS = 4


def contiguous_blocks(num_samples: int, n_blocks: int) -> np.ndarray:
    """(num_samples,) block index of each time-ordered test sample: ``n_blocks`` contiguous blocks of
    (nearly) equal size; a clear error when there are too few samples for them."""
    if not isinstance(n_blocks, (int, np.integer)) or n_blocks < MIN_BLOCKS:
        raise ValueError(f"n_blocks must be an integer of at least {MIN_BLOCKS} for a bootstrap, got {n_blocks!r}.")
    if num_samples < n_blocks * MIN_BLOCK_SAMPLES:
        raise ValueError(
            f"The test part has {num_samples} samples: too few for the bootstrap's {n_blocks} contiguous blocks of at "
            f"least {MIN_BLOCK_SAMPLES} samples. Give a longer recording, a larger test_fraction or fewer n_blocks."
        )
    return (np.arange(num_samples) * n_blocks) // num_samples


def normalise(r2, baseline, ceiling) -> np.ndarray:
    """p = (R² - R²_baseline) / (R²_ceiling - R²_baseline): 0 at the baseline, 1 at the ceiling."""
    r2, baseline, ceiling = np.asarray(r2, float), np.asarray(baseline, float), np.asarray(ceiling, float)
    span = ceiling - baseline
    return (r2 - baseline) / np.where(span > 0, span, np.nan)


def k_reaching(ks, p, q: float) -> float:
    """The smallest k at which the curve ``p`` (over increasing ``ks``) reaches ``q``, interpolated
    linearly in log k between the last k below and the first at or above; ``ks[0]`` when the first
    already reaches it, NaN when none does."""
    ks, p = np.asarray(ks, float), np.asarray(p, float)
    above = np.flatnonzero(p >= q)
    if len(above) == 0:
        return np.nan
    i = int(above[0])
    if i == 0:
        return float(ks[0])
    lo, hi = np.log(ks[i - 1]), np.log(ks[i])
    step = (q - p[i - 1]) / (p[i] - p[i - 1])
    return float(np.exp(lo + step * (hi - lo)))


def block_sums(y: np.ndarray, blocks: np.ndarray, n_blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block and dimension: sample count (B,), sum (B, D) and sum of squares (B, D) of ``y``."""
    count = np.bincount(blocks, minlength=n_blocks).astype(float)
    sums = np.stack([np.bincount(blocks, y[:, d], n_blocks) for d in range(y.shape[1])], axis=1)
    squares = np.stack([np.bincount(blocks, y[:, d] ** 2, n_blocks) for d in range(y.shape[1])], axis=1)
    return count, sums, squares


def block_errors(y: np.ndarray, predictions: np.ndarray, blocks: np.ndarray, n_blocks: int) -> np.ndarray:
    """(..., B, D) squared errors summed per block, of (..., T, D) predictions."""
    squared = (predictions - y) ** 2
    return np.stack([squared[..., blocks == b, :].sum(axis=-2) for b in range(n_blocks)], axis=-2)


def drawn_r2(errors, count, sums, squares, block_draws, seed_draws) -> np.ndarray:
    """(R, M) seed-averaged R² of M models for R draws.

    ``errors`` (M, S, B, D) are the runs' squared errors summed per block, ``count``, ``sums``,
    ``squares`` the test behaviour's per-block statistics (:func:`block_sums`); ``block_draws``
    (R, B) counts how often each block is drawn, ``seed_draws`` (R, S) the weight of each seed.
    The R² of a run is that of the pooled drawn samples, averaged over dimensions.
    """
    n = block_draws @ count  # (R,)
    total = block_draws @ squares - (block_draws @ sums) ** 2 / n[:, None]  # (R, D)
    residual = np.einsum("rb,msbd->rmsd", block_draws, errors)
    r2 = 1.0 - residual / np.where(total > 0, total, np.nan)[:, None, None, :]
    return np.einsum("rs,rms->rm", seed_draws, np.nanmean(r2, axis=-1))


def bootstrap_r2(y, predictions, blocks, n_blocks: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, M) bootstrap replicates of the seed-averaged R² of M models.

    ``predictions`` is (M, S, T, D): M models, S seeds. Each replicate draws the test blocks and the
    seeds with replacement, scores every run on the drawn blocks and averages over the drawn seeds
    (:func:`drawn_r2`). Every model sees the same draw, so the replicates keep the models' pairing
    (a curve point and its baseline move together).
    """
    num_seeds = predictions.shape[1]
    block_draws = np.stack([np.bincount(rng.integers(n_blocks, size=n_blocks), minlength=n_blocks)
                            for _ in range(n_boot)]).astype(float)  # fmt: skip
    seed_draws = np.stack([np.bincount(rng.integers(num_seeds, size=num_seeds), minlength=num_seeds)
                           for _ in range(n_boot)]).astype(float) / num_seeds  # fmt: skip
    errors = block_errors(y, predictions, blocks, n_blocks)
    return drawn_r2(errors, *block_sums(y, blocks, n_blocks), block_draws, seed_draws)
