"""Sample-quality metrics on feature vectors: Fréchet distance, density and coverage, class-wise.

All functions take features as (N, D) arrays (numpy or torch), typically the penultimate layer of
the evaluator classifier (`wsl_diffusion.eval.feature_net`). "real" is the reference set, "fake" the
generated one.

Fréchet distance (the FID formula, Heusel et al. 2017, in our feature space):
    FD = ||mu_r - mu_f||^2 + tr(C_r + C_f - 2 (C_r C_f)^{1/2}).
It is biased upwards for finite samples, by an amount that grows with D / n, so an FD is only
comparable to another computed with the same numbers of samples: every result carries them.

Density and coverage (Naeem et al. 2020, "Reliable fidelity and diversity metrics"): each real
point r_i gets a ball B(r_i, rho_i), rho_i = distance to its k-th nearest real neighbour (itself
excluded). With M fake points f_j,
    density  = 1/(k M) sum_j #{i : ||f_j - r_i|| < rho_i}      (about 1 when fake ~ real; unbounded)
    coverage = 1/N     #{i : min_j ||f_j - r_i|| < rho_i}      (fraction of real balls hit; in [0, 1]).
For two identical sets without duplicate points both are exactly 1 (each ball holds its own
centre and k - 1 neighbours strictly inside).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import scipy.linalg
import torch

DEFAULT_K = 5
DEFAULT_EPS = 1e-6


def _as_features(name: str, x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a (N, D) feature matrix; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf features")
    return x


@dataclass(frozen=True)
class FrechetResult:
    """A Fréchet distance and the sample sizes it was computed from (FD depends on them)."""

    distance: float
    n_real: int
    n_fake: int
    regularised: bool = False  # True if eps * I had to be added to the covariances

    def to_dict(self) -> dict:
        return asdict(self)


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, N >= 2."""
    x = _as_features("features", features)
    if len(x) < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance; got {len(x)}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance_from_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray, *,
                                eps: float = DEFAULT_EPS) -> tuple[float, bool]:
    """FD between N(mu1, cov1) and N(mu2, cov2). Returns (distance, regularised).

    The matrix square root comes from `scipy.linalg.sqrtm` of cov1 @ cov2. That product is not
    symmetric, and when a covariance is singular (fewer samples than dimensions, or dead features)
    sqrtm warns that the matrix is singular and can return inf/NaN or a result with a sizeable
    imaginary part. In any of these cases eps * I is added to both covariances inside the root —
    a ridge that makes them positive definite and changes the distance by O(eps * D) — and the
    root is recomputed (`regularised` = True). The imaginary part
    that remains is round-off (C1 C2 has real non-negative eigenvalues): it is dropped after
    checking that it is small relative to the root; a large one raises ValueError.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"inconsistent shapes: mu {mu1.shape} / {mu2.shape}, cov {cov1.shape} / {cov2.shape}")
    diff = mu1 - mu2

    def root(a, b) -> tuple[np.ndarray, bool, bool]:
        """(sqrtm(a @ b), sqrtm warned 'singular', result finite with negligible imaginary part)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
            r = scipy.linalg.sqrtm(a @ b)
        r = np.asarray(r[0] if isinstance(r, tuple) else r)  # older scipy may return (root, error)
        singular = any(issubclass(w.category, scipy.linalg.LinAlgWarning) for w in caught)
        usable = bool(np.all(np.isfinite(r)))
        if usable and np.iscomplexobj(r):
            usable = float(np.abs(r.imag).max()) <= 1e-3 * max(float(np.abs(r).max()), 1e-12)
        return r, singular, usable

    covmean, singular, usable = root(cov1, cov2)
    regularised = singular or not usable
    if regularised:
        ridge = eps * np.eye(len(mu1))
        covmean, _, usable = root(cov1 + ridge, cov2 + ridge)
        if not usable:
            raise ValueError("Fréchet distance: the covariance square root is not real even with an eps ridge; "
                             "use more samples or a larger eps")
    tr_covmean = float(np.trace(covmean.real))
    fd = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean)
    return max(fd, 0.0), regularised  # tiny negative values are round-off around 0


def frechet_distance(real, fake, *, eps: float = DEFAULT_EPS) -> FrechetResult:
    """Fréchet distance between two feature sets (N, D) and (M, D), with N and M alongside."""
    r, f = _as_features("real", real), _as_features("fake", fake)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature dimensions differ: {r.shape[1]} vs {f.shape[1]}")
    mu_r, cov_r = gaussian_stats(r)
    mu_f, cov_f = gaussian_stats(f)
    fd, reg = frechet_distance_from_stats(mu_r, cov_r, mu_f, cov_f, eps=eps)
    return FrechetResult(fd, len(r), len(f), reg)


def _pairwise_distances(a: np.ndarray, b: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
    """Euclidean distances (len(a), len(b)) in float64, computed in row chunks."""
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    out = [torch.cdist(ta[i:i + chunk], tb, compute_mode="donot_use_mm_for_euclid_dist")
           for i in range(0, len(a), chunk)]
    return torch.cat(out).numpy()


def knn_radii(real, *, k: int = DEFAULT_K) -> np.ndarray:
    """Distance (N,) from each real point to its k-th nearest other real point."""
    r = _as_features("real", real)
    if not 1 <= k < len(r):
        raise ValueError(f"k = {k} nearest neighbours need more than k real points; got {len(r)}")
    d = _pairwise_distances(r, r)
    # Column k of the sorted row: column 0 is the point itself (distance 0).
    return np.partition(d, k, axis=1)[:, k]


@dataclass(frozen=True)
class DensityCoverage:
    density: float
    coverage: float
    n_real: int
    n_fake: int
    k: int

    def to_dict(self) -> dict:
        return asdict(self)


def density_coverage(real, fake, *, k: int = DEFAULT_K) -> DensityCoverage:
    """Density and coverage of `fake` (M, D) w.r.t. `real` (N, D) with k-NN balls on the reals."""
    r, f = _as_features("real", real), _as_features("fake", fake)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature dimensions differ: {r.shape[1]} vs {f.shape[1]}")
    if len(f) == 0:
        raise ValueError("no fake features")
    radii = knn_radii(r, k=k)  # (N,)
    inside = _pairwise_distances(r, f) < radii[:, None]  # (N, M): fake j inside the ball of real i
    density = float(inside.sum() / (k * len(f)))
    coverage = float(inside.any(axis=1).mean())
    return DensityCoverage(density, coverage, len(r), len(f), k)


def classwise_metrics(real, real_labels, fake, fake_labels, *, k: int = DEFAULT_K,
                      eps: float = DEFAULT_EPS, classes=None) -> dict:
    """FD, density and coverage per class c (fake conditioned on c vs real of class c), averaged.

    real_labels (N,), fake_labels (M,): class indices. `classes`: the classes to use (default:
    those present in both sets). Returns {"cw_fd", "cw_density", "cw_coverage": mean over classes,
    "n_real_per_class", "n_fake_per_class": lists aligned with "classes", "class_details": one dict
    per class}.
    A class needs at least k + 1 real and 2 fake samples; fewer raises ValueError.
    """
    r, f = _as_features("real", real), _as_features("fake", fake)
    yr, yf = np.asarray(real_labels).reshape(-1), np.asarray(fake_labels).reshape(-1)
    if len(yr) != len(r) or len(yf) != len(f):
        raise ValueError("one label per feature vector is needed")
    if classes is None:
        classes = sorted(set(yr.tolist()) & set(yf.tolist()))
    if not classes:
        raise ValueError("no class has both real and fake samples")
    per_class = []
    for c in classes:
        rc, fc = r[yr == c], f[yf == c]
        if len(rc) < k + 1 or len(fc) < 2:
            raise ValueError(f"class {c}: {len(rc)} real and {len(fc)} fake samples; class-wise metrics need "
                             f"at least {k + 1} real and 2 fake per class")
        fd = frechet_distance(rc, fc, eps=eps)
        dc = density_coverage(rc, fc, k=k)
        per_class.append({"class": int(c), "fd": fd.distance, "density": dc.density, "coverage": dc.coverage,
                          "n_real": len(rc), "n_fake": len(fc), "regularised": fd.regularised})
    return {
        "cw_fd": float(np.mean([p["fd"] for p in per_class])),
        "cw_density": float(np.mean([p["density"] for p in per_class])),
        "cw_coverage": float(np.mean([p["coverage"] for p in per_class])),
        "classes": [int(c) for c in classes],
        "n_real_per_class": [p["n_real"] for p in per_class],
        "n_fake_per_class": [p["n_fake"] for p in per_class],
        "k": k,
        "class_details": per_class,
    }


def sample_metrics(real, real_labels, fake, fake_labels, *, k: int = DEFAULT_K, eps: float = DEFAULT_EPS) -> dict:
    """FD (with n), density, coverage over all samples, plus the class-wise versions (see above)."""
    fd = frechet_distance(real, fake, eps=eps)
    dc = density_coverage(real, fake, k=k)
    return {"fd": fd.distance, "fd_n_real": fd.n_real, "fd_n_fake": fd.n_fake, "fd_regularised": fd.regularised,
            "density": dc.density, "coverage": dc.coverage, "k": k,
            **classwise_metrics(real, real_labels, fake, fake_labels, k=k, eps=eps)}
