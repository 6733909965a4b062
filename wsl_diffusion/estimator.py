"""A scikit-learn estimator: fit a DMIS diffusion model on imprecise labels, predict with its posterior.

    from sklearn.model_selection import cross_val_score
    from wsl_diffusion import DMISClassifier
    clf = DMISClassifier(kimg=64, random_state=0)
    cross_val_score(clf, X, y_noisy, cv=3)        # X: uint8 (N, H, W[, C]) images or flat rows

`y` follows scikit-learn's conventions:
  * 1-D observed labels (noisy or clean; any sortable labels, kept in `classes_`);
  * -1 marks an unlabelled row, as in `sklearn.semi_supervised` (semi-supervised learning);
  * an (N, K) 0/1 matrix is a candidate set per row (partial labels; classes_ = 0..K-1);
  * positive-unlabelled data: `positive_unlabelled=True`, y = 1 for a labelled positive and
    anything else for an unlabelled row, with `pu_class_prior` the share of positives overall
    (None: estimated from X and which rows are labelled).

`X` is uint8 images (N, H, W) or (N, H, W, C), or rows of numbers. Rows are laid out as images of
`image_shape` ((H, W) or (H, W, C)), or, without one, as the smallest even square that holds them
(zero-padded). Anything that is not uint8 is min-max scaled to 0..255 with the training range
(stored in `pixel_range_`) and rounded, like image pixels.

`fit` trains with `wsl_diffusion.training.loop.train` into `run_dir`, or into a temporary
directory that is removed afterwards (the model stays in memory); predictions go through
`DiffusionClassifier`, the same path as `DiffusionClassifier.from_run` on a saved run.
`budget` caps the network evaluations per predicted image (`DiffusionClassifier.predict_proba`'s
`budget=`, fitted on the training images); None: the run's schedule.

`refine=True` (noisy labels, method "dmis") fits the README's two-stage noisy-label recipe, as
`wsl-diff train` then `wsl-diff refine`: stage 1 in run_dir/stage1, then a second model, `kimg`
long again, trained on the labels stage 1's classifier agrees with (`training.refine`), in
run_dir/stage2; predictions come from stage 2. It is off by default: the recipe was chosen at
256 kimg on digits (benchmarks/results/digits/select/refine_agreement.md), and at the default 64
kimg a trial found two stages no better than one stage of 128 kimg, the same compute
(select/refine_short_budget.md).
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from label_models.labels import ImpreciseLabels

from wsl_diffusion.classifier import DiffusionClassifier, calibration_of
from wsl_diffusion.config import TrainConfig, kind_defaults
from wsl_diffusion.data.datasets import ArrayDataset
from wsl_diffusion.run import load_run
from wsl_diffusion.training.loop import train
from wsl_diffusion.training.refine import write_stage_two

SUPERVISIONS = ("auto", "noisy", "semi", "partial", "clean")


class DMISClassifier(ClassifierMixin, BaseEstimator):
    """DMIS as a scikit-learn classifier (see the module docstring for X and y).

    supervision: "auto" (an (N, K) y is partial; a 1-D y with -1 entries is semi-supervised;
      otherwise noisy), or one of "noisy", "semi", "partial", "clean" to say it outright.
    kimg, model, batch_size, method: the training budget, network preset, batch and method
      ("dmis" or "vanilla"), as `wsl-diff train --kimg --model --batch-size --method`.
    image_shape: (H, W) or (H, W, C) for rows of numbers; None: a zero-padded square.
    positive_unlabelled, pu_class_prior: positive-unlabelled data and its share of positives
      (None: estimated from the images and which rows are labelled, `TrainConfig.pu_prior`).
    random_state: the training seed. threads: torch CPU threads during fit (None: leave as is).
    run_dir: where the run is written (None: a temporary directory). It must not hold a run
      yet, so leave it None when scikit-learn fits clones (cross-validation, grid search).
    budget: at most this many network evaluations per predicted image (None: the run's schedule).
    refine: two stages for noisy labels (see the module docstring); False: one stage.
    """

    def __init__(self, supervision: str = "auto", kimg: float = 64.0, model: str = "small",
                 batch_size: int = 128, method: str = "dmis", image_shape: tuple | None = None,
                 positive_unlabelled: bool = False, pu_class_prior: float | None = None,
                 random_state: int = 0, threads: int | None = None, run_dir: str | None = None,
                 budget: int | None = None, refine: bool = False):
        self.supervision = supervision
        self.kimg = kimg
        self.model = model
        self.batch_size = batch_size
        self.method = method
        self.image_shape = image_shape
        self.positive_unlabelled = positive_unlabelled
        self.pu_class_prior = pu_class_prior
        self.random_state = random_state
        self.budget = budget
        self.threads = threads
        self.run_dir = run_dir
        self.refine = refine

    # ------------------------------------------------------------------------------------------
    # scikit-learn API

    def fit(self, X, y) -> "DMISClassifier":
        if self.supervision not in SUPERVISIONS:
            raise ValueError(f"unknown supervision {self.supervision!r}; choose one of {', '.join(SUPERVISIONS)}")
        if y is None:
            raise ValueError("DMISClassifier requires y to be passed, but the target y is None")
        X = self._check_X(X, fitting=True)
        labels = self._labels(y, len(X))
        if self.refine and (labels.kind != "noisy" or self.method != "dmis"):
            raise ValueError(f"refine=True is the two-stage recipe for noisy labels with method='dmis'; these are "
                             f"{labels.kind} labels with method={self.method!r}: pass refine=False")
        images = self._images(X, fitting=True)
        config = TrainConfig(
            dataset="<in-memory array>", supervision={"supervision": labels.kind}, method=self.method,
            **kind_defaults(labels.kind),
            model=self.model, batch_size=int(self.batch_size), total_kimg=float(self.kimg),
            seed=int(self.random_state), samples_per_class=0,
            pu_prior="estimate" if self.pu_class_prior is None else float(self.pu_class_prior),
            checkpoint_every_kimg=max(float(self.kimg), 1e-3), log_every_kimg=max(float(self.kimg) / 8, 1e-3))
        data = ArrayDataset(images, np.zeros(len(images), dtype=np.int64),
                            tuple(str(c) for c in self.classes_) if labels.kind != "pu" else ("negative", "positive"))
        if self.threads is not None:
            import torch

            torch.set_num_threads(int(self.threads))
        if self.run_dir is not None:
            self.classifier_ = self._fit_stages(config, Path(self.run_dir), data, labels)
        else:
            with tempfile.TemporaryDirectory(prefix="dmis-fit-") as tmp:
                self.classifier_ = self._fit_stages(config, Path(tmp), data, labels)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """(N, K) p(y | x) from the diffusion posterior; column j is `classes_[j]`."""
        check_is_fitted(self, "classifier_")
        return self.classifier_.predict_proba(self._images(self._check_X(X, fitting=False), fitting=False),
                                              budget=self.budget)

    def predict(self, X) -> np.ndarray:
        probs = self.predict_proba(X)
        return self.classes_[probs.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.classifier_tags.poor_score = True  # a diffusion model trained for seconds in the checks
        return tags

    # ------------------------------------------------------------------------------------------
    # Helpers

    def _fit_stages(self, config: TrainConfig, run_dir: Path, data: ArrayDataset, labels) -> DiffusionClassifier:
        """One run in run_dir, or with `refine` stage 1 in run_dir/stage1 and stage 2 in run_dir/stage2."""
        if not self.refine:
            return self._train(config, run_dir, data, labels)
        stage1, stage2 = run_dir / "stage1", run_dir / "stage2"
        train(config, stage1, train_data=data, labels=labels, progress=False)  # no classifier needed from it
        refined, config2, _ = write_stage_two(load_run(stage1), stage2, images=data.images)
        return self._train(config2, stage2, data, refined)

    @staticmethod
    def _train(config: TrainConfig, run_dir: Path, data: ArrayDataset, labels) -> DiffusionClassifier:
        train(config, run_dir, train_data=data, labels=labels, progress=False)
        clf = DiffusionClassifier.from_run(run_dir)
        clf.calibration = calibration_of(run_dir, data.images, labels, config)  # the run dir may be temporary
        return clf

    def _check_X(self, X, *, fitting: bool) -> np.ndarray:
        """scikit-learn's own checks (numbers, finite, not sparse, not empty; the feature count
        against fit's), images allowed; uint8 stays uint8."""
        return validate_data(self, X, reset=fitting, allow_nd=True, dtype="numeric", ensure_all_finite=True,
                             ensure_min_samples=1)

    def _labels(self, y, n: int) -> ImpreciseLabels:
        y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"X has {n} rows but y has {len(y)}; give one label (row) per image")
        if self.positive_unlabelled:
            if self.pu_class_prior is not None and not 0 < float(self.pu_class_prior) < 1:
                raise ValueError("pu_class_prior is the share of positives among all images, in (0, 1), or None "
                                 f"to estimate it; got {self.pu_class_prior!r}")
            positive = y == 1
            if not positive.any() or positive.all():
                raise ValueError("positive-unlabelled y needs some labelled positives (1) and some unlabelled rows")
            self.classes_ = np.array([0, 1])
            matrix = np.where(positive[:, None], np.array([[0.0, 1.0]]), 1.0)
            return ImpreciseLabels(matrix=matrix, kind="pu")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)  # scikit-learn's DataConversionWarning, then 1-D labels
        if y.ndim == 2:
            if self.supervision not in ("auto", "partial"):
                raise ValueError(f"an (N, K) y is a candidate matrix (partial labels), not {self.supervision} labels")
            self.classes_ = np.arange(y.shape[1])
            return ImpreciseLabels(matrix=y.astype(np.float32), kind="partial")
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D labels or an (N, K) candidate matrix; got shape {y.shape}")
        check_classification_targets(y)  # "Unknown label type" for continuous targets
        # -1 marks an unlabelled row unless the labels are declared fully observed.
        unlabelled = ((y == -1) if y.dtype.kind in "iuf" and self.supervision in ("auto", "semi")
                      else np.zeros(n, dtype=bool))
        self.classes_ = np.unique(y[~unlabelled])
        if len(self.classes_) < 2:
            hint = " (-1 marks unlabelled rows; if it is a class, pass supervision='noisy')" if unlabelled.any() else ""
            raise ValueError(f"y names {len(self.classes_)} class(es){hint}; a classifier needs at least 2")
        kind = self.supervision
        if kind == "auto":
            kind = "semi" if unlabelled.any() else "noisy"
        observed = np.full(n, -1, dtype=np.int64)
        observed[~unlabelled] = np.searchsorted(self.classes_, y[~unlabelled])
        k = len(self.classes_)
        matrix = np.ones((n, k), dtype=np.float32)
        matrix[~unlabelled] = np.eye(k, dtype=np.float32)[observed[~unlabelled]]
        return ImpreciseLabels(matrix=matrix, kind=kind, observed=observed)

    def _images(self, X: np.ndarray, *, fitting: bool) -> np.ndarray:
        """X -> uint8 (N, H, W, C) images the network takes (even H and W)."""
        if X.dtype != np.uint8:
            values = X.astype(np.float64)
            if fitting:
                self.pixel_range_ = (float(values.min()), float(values.max()))
            lo, hi = self.pixel_range_
            X = np.clip(np.round((values - lo) / max(hi - lo, 1e-12) * 255.0), 0, 255).astype(np.uint8)
        elif fitting:
            self.pixel_range_ = (0.0, 255.0)
        n = len(X)
        if X.ndim == 2:
            h, w, c = self._layout(X.shape[1])
            X = np.pad(X, ((0, 0), (0, h * w * c - X.shape[1]))).reshape(n, h, w, c)
        elif X.ndim == 3:
            X = X[..., None]
        h, w = X.shape[1:3]
        if h % 2 or w % 2:  # the U-Net halves the resolution once
            X = np.pad(X, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        return np.ascontiguousarray(X)

    def _layout(self, d: int) -> tuple[int, int, int]:
        """(H, W, C) of a row of d numbers: `image_shape`, or the smallest square that holds d
        (the rest zero-padded)."""
        if self.image_shape is not None:
            shape = tuple(int(v) for v in self.image_shape)
            shape = shape if len(shape) == 3 else (*shape, 1)
            if len(shape) != 3 or int(np.prod(shape)) != d:
                raise ValueError(f"image_shape {self.image_shape} does not hold the {d} numbers of a row")
            return shape
        side = max(2, math.ceil(math.sqrt(d)))
        return side, side, 1
