"""Equal-risk-contribution weights from a shrunk covariance, batched over sessions (pure numpy).

Every function takes a stack of return windows `x` of shape (G, n, p): G problems (sessions), n
observations (the window), p strategies; each problem is solved independently of the others (the same
operations on every slice), so a session gives the same bits whether it is solved alone or in a range.

- `ledoit_wolf(x)`: the Ledoit-Wolf (2004) estimate, the empirical covariance (1/n, centered) shrunk
  toward mu * I (mu = its mean variance) with the optimal intensity; equals
  `sklearn.covariance.ledoit_wolf` (tested), written batched because a world needs one per session.
- `shrunk(x, delta)`: the same target with a constant intensity delta in [0, 1].
- `erc_weights(cov)`: the long-only weights whose risk contributions w_i (cov w)_i are all equal, by
  damped Newton steps on the convex problem min 1/2 y' cov y - sum(log y_i) / p (Spinu 2013),
  w = y / sum(y), from the inverse-volatility start; each problem stops at its own first iterate whose
  gradient is under TOL, so its bits do not depend on the other problems of the batch. A
  covariance that is not positive definite (smallest eigenvalue <= 1e-10 of the mean variance, or
  non-finite) has no solution: its row is NaN and `ok` is False.
"""

from __future__ import annotations

import numpy as np

TOL = 1e-12  # on the gradient of the problem scaled to unit mean variance
MAX_STEPS = 50  # quadratic convergence: 5-8 steps reach TOL on well-posed problems


def _empirical(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xc = x - x.mean(axis=1, keepdims=True)
    return xc, np.matmul(xc.transpose(0, 2, 1), xc) / x.shape[1]


def ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Shrunk covariances (G, p, p) of the windows `x` (G, n, p)."""
    _, n, p = x.shape
    xc, emp = _empirical(x)
    x2 = xc**2
    trace = x2.sum(axis=1) / n
    mu = trace.sum(axis=1) / p
    beta_ = np.matmul(x2.transpose(0, 2, 1), x2).sum(axis=(1, 2))
    delta_ = (emp**2).sum(axis=(1, 2))
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * trace.sum(axis=1) + p * mu**2) / p
    beta = np.minimum(beta, delta)
    s = np.where(delta > 0, beta / np.where(delta > 0, delta, 1.0), 0.0)
    return (1.0 - s)[:, None, None] * emp + (s * mu)[:, None, None] * np.eye(p)


def shrunk(x: np.ndarray, delta: float) -> np.ndarray:
    """Empirical covariances (1/n, centered) shrunk toward mu * I with the constant intensity `delta`."""
    p = x.shape[2]
    _, emp = _empirical(x)
    mu = np.trace(emp, axis1=1, axis2=2) / p
    return (1.0 - delta) * emp + (delta * mu)[:, None, None] * np.eye(p)


def erc_weights(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal-risk-contribution weights (G, p) of the covariances `cov` (G, p, p) and which are defined."""
    g, p = cov.shape[0], cov.shape[1]
    finite = np.isfinite(cov).all(axis=(1, 2))
    scale = np.where(finite, np.trace(np.where(finite[:, None, None], cov, 0.0), axis1=1, axis2=2) / p, 0.0)
    ok = finite & (scale > 0)
    c = np.where(ok[:, None, None], cov / np.where(ok, scale, 1.0)[:, None, None], np.eye(p))
    ok &= np.linalg.eigvalsh(c)[:, 0] > 1e-10
    c[~ok] = np.eye(p)
    b = 1.0 / p
    y = 1.0 / np.sqrt(np.diagonal(c, axis1=1, axis2=2))
    y = y / np.sqrt(np.einsum("gi,gij,gj->g", y, c, y))[:, None]  # on the optimum's scale
    active = np.ones(g, dtype=bool)
    for _ in range(MAX_STEPS):
        grad = np.einsum("gij,gj->gi", c, y) - b / y
        active &= np.abs(grad).max(axis=1) >= TOL  # a converged problem stops where it is
        if not active.any():
            break
        ca, ya, ga = c[active], y[active], grad[active]
        h = ca.copy()
        h[:, np.arange(p), np.arange(p)] += b / ya**2
        step = np.linalg.solve(h, ga[:, :, None])[:, :, 0]
        t = np.ones(len(ya))
        while True:  # damping: stay in the positive orthant
            bad = (ya - t[:, None] * step <= 0).any(axis=1)
            if not bad.any():
                break
            t[bad] *= 0.5
        y[active] = ya - t[:, None] * step
    w = y / y.sum(axis=1, keepdims=True)
    w[~ok] = np.nan
    return w, ok
