"""Curvature from the validation set: the sketched Fisher (paper) or Hessian Lanczos.

* ``fisher``: H̃ = (1/M) Σ_v z_v z_vᵀ (k x k) from validation sketches z_v = R g_v;
  eigendecomposition H̃ = V Λ Vᵀ, eigenvalues descending (tiny negatives clipped to 0).
* ``hessian-lanczos``: top-k eigenpairs (λ_j, u_j) of the Hessian of the mean validation
  loss, by Lanczos with full re-orthogonalisation on Hessian-vector products. Here the
  eigenvector basis U (d x k) *is* the sketch (z_i = Uᵀ g_i) and V = I.
Eigenvector signs are fixed (largest-magnitude entry positive) for determinism.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import InvalidParameterError
from ..registry import Registry
from .projectors import derive_seed



def _fix_signs(vecs: np.ndarray) -> np.ndarray:
    idx = np.argmax(np.abs(vecs), axis=0)
    signs = np.sign(vecs[idx, np.arange(vecs.shape[1])])
    signs[signs == 0] = 1.0
    return vecs * signs


def fisher_eigen(z_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, k) validation sketches -> eigvals (k,) descending >= 0 and V (k, k) (columns), float64."""
    z = np.asarray(z_val, dtype=np.float64)
    h = z.T @ z / z.shape[0]
    lam, vec = np.linalg.eigh(h)
    order = np.argsort(-lam, kind="stable")
    lam, vec = lam[order], vec[:, order]
    return np.clip(lam, 0.0, None), _fix_signs(vec)


def lanczos(
    matvec: Callable[[np.ndarray], np.ndarray], dim: int, k: int, steps: int | None = None, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (algebraic) eigenpairs of a symmetric operator given by ``matvec`` (float64).

    Lanczos with full re-orthogonalisation (two Gram–Schmidt passes); on breakdown the
    basis is continued with a fresh random vector orthogonal to it.

    Returns:
        eigvals (k,) descending and eigenvectors (dim, k) (orthonormal columns).
    """
    if not 1 <= k <= dim:
        raise InvalidParameterError(f"lanczos needs 1 <= k <= d; got k={k}, d={dim}.")
    m = min(dim, steps if steps is not None else 2 * k + 20)
    m = max(m, k)
    rng = np.random.default_rng(derive_seed(seed, "lanczos", 0))
    q = np.zeros((m, dim))
    alpha = np.zeros(m)
    beta = np.zeros(m)
    v = rng.standard_normal(dim)
    v /= np.linalg.norm(v)
    for j in range(m):
        q[j] = v
        w = np.asarray(matvec(v), dtype=np.float64)
        alpha[j] = w @ v
        for _ in range(2):
            w -= q[: j + 1].T @ (q[: j + 1] @ w)
        if j + 1 == m:
            break
        b = np.linalg.norm(w)
        scale = max(1.0, float(np.abs(alpha[: j + 1]).max()))
        if b <= 1e-10 * scale:  # invariant subspace: restart orthogonally
            beta[j] = 0.0
            w = rng.standard_normal(dim)
            for _ in range(2):
                w -= q[: j + 1].T @ (q[: j + 1] @ w)
            v = w / np.linalg.norm(w)
        else:
            beta[j] = b
            v = w / b
    t = np.diag(alpha) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    lam, y = np.linalg.eigh(t)
    order = np.argsort(-lam, kind="stable")[:k]
    vecs = q.T @ y[:, order]
    return lam[order], _fix_signs(vecs)


#: Curvature methods by name.  Capability ``sketched``: True when the curvature is computed
#: from the projector's validation sketches (the sketch is the random projector), False when
#: the method yields its own basis that becomes the sketch (Hessian eigenvectors).
CURVATURES: Registry[Callable[..., Any]] = Registry("curvature")
CURVATURES.add("fisher", fisher_eigen, capabilities={"sketched": True},
               description="sketched empirical Fisher of the validation gradients (paper)")
CURVATURES.add("hessian-lanczos", lanczos, capabilities={"sketched": False},
               description="top eigenpairs of the validation-loss Hessian (Lanczos on HVPs)")
