"""Linear readouts: ridge regression in closed form and L2-penalised multinomial logistic
regression, with the penalty chosen on held-out contiguous blocks. The Wiener filter, behaviour
decoding from inferred rates and the smoothing baseline of co-smoothing share them."""

from __future__ import annotations

import numpy as np

from .metrics import r2_per_dimension


def with_intercept(x: np.ndarray) -> np.ndarray:
    """``x`` with a column of ones appended (the intercept, never penalised by :func:`ridge_solve`)."""
    return np.hstack([x, np.ones((len(x), 1), dtype=x.dtype)])


def ridge_solve(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights minimising ``|y - x w|² + alpha |w|²``, the last column of ``x`` (the intercept) unpenalised."""
    gram = x.T @ x + alpha * np.eye(x.shape[1])
    gram[-1, -1] -= alpha
    return np.linalg.solve(gram, x.T @ y)


def contiguous_folds(n: int, folds: int) -> list[np.ndarray]:
    """Indices of ``folds`` contiguous blocks of ``range(n)`` (neighbouring samples are correlated,
    so shuffled folds would leak)."""
    if folds < 2 or n < folds:
        raise ValueError(f"Need at least 2 folds and one sample per fold, got {folds} folds for {n} samples.")
    return np.array_split(np.arange(n), folds)


def choose_alpha(x: np.ndarray, y: np.ndarray, alphas, folds: int = 5) -> float:
    """The penalty with the best mean R² over contiguous-block cross-validation on ``(x, y)``
    (``x`` with its intercept column)."""
    blocks = contiguous_folds(len(x), folds)
    scores = []
    for alpha in alphas:
        fold_scores = []
        for held in blocks:
            keep = np.ones(len(x), dtype=bool)
            keep[held] = False
            w = ridge_solve(x[keep], y[keep], alpha)
            fold_scores.append(np.nanmean(r2_per_dimension(y[held], x[held] @ w)))
        scores.append(np.nanmean(fold_scores))
    return float(alphas[int(np.nanargmax(scores))])


def _softmax_loss(w_flat, x, onehot, alpha):
    w = w_flat.reshape(x.shape[1], onehot.shape[1])
    logits = x @ w
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    penalty = 0.5 * alpha * (w[:-1] ** 2).sum()  # the intercept row is not penalised
    grad = x.T @ (np.exp(log_p) - onehot)
    grad[:-1] += alpha * w[:-1]
    return -(onehot * log_p).sum() + penalty, grad.ravel()


def logistic_fit(x: np.ndarray, labels: np.ndarray, alpha: float, classes=None) -> np.ndarray:
    """(F, C) weights of multinomial logistic regression on ``x`` (with its intercept column last),
    L2 penalty ``alpha`` on all but the intercept, fitted by L-BFGS."""
    from scipy.optimize import minimize

    classes = np.unique(labels) if classes is None else np.asarray(classes)
    onehot = (np.asarray(labels)[:, None] == classes[None, :]).astype(np.float64)
    w0 = np.zeros(x.shape[1] * len(classes))
    result = minimize(_softmax_loss, w0, args=(x, onehot, alpha), jac=True, method="L-BFGS-B")
    return result.x.reshape(x.shape[1], len(classes))


def choose_logistic_alpha(x: np.ndarray, labels: np.ndarray, alphas, folds: int = 5) -> float:
    """The penalty with the best cross-validated accuracy (contiguous folds, in trial order)."""
    classes = np.unique(labels)
    scores = []
    for alpha in alphas:
        correct = 0
        for held in contiguous_folds(len(x), folds):
            keep = np.ones(len(x), dtype=bool)
            keep[held] = False
            w = logistic_fit(x[keep], labels[keep], alpha, classes)
            correct += int((classes[np.argmax(x[held] @ w, axis=1)] == labels[held]).sum())
        scores.append(correct)
    return float(alphas[int(np.argmax(scores))])
