"""An sklearn-style estimator around a trained run: the diffusion model IS the classifier.

    from wsl_diffusion.classifier import DiffusionClassifier
    clf = DiffusionClassifier.from_run("runs/partial")          # no fit: load and go
    probs = clf.predict_proba(images)    # images: uint8 (N, H, W, C) or float (N, C, H, W) in [-1, 1]
    clf.predict(images), clf.score(images, y)
    errors = clf.class_errors(images)    # (N, K) weighted denoising errors (nats with "elbo" weights)
    clf.predict_proba(images, budget=20) # at most 20 network evaluations per image

Probabilities are p(y | x) = softmax(-e_y / tau + log prior_y) with the run's class prior and
temperature (both estimated during training from the imprecise labels alone), unless overridden.
With `budget=`, the schedule is the one, among those that fit the budget, whose classes agree most
often with the whole level grid's on the run's own training images (`schedule_fit.fit_budget_schedule`);
no clean label is needed. It is stored in the run (posterior_budgets.json) and reused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wsl_diffusion.data.datasets import to_model_space
from wsl_diffusion.posterior import INFERENCE_DRAWS, PosteriorConfig, diffusion_posterior
from wsl_diffusion.run import (CHECKPOINT_NAME, load_checkpoint, load_model, load_run, run_label_likelihood,
                               run_posterior, store_budget_schedule, stored_budget_schedules)
from wsl_diffusion.schedule_fit import (BUDGET_FIT_DRAWS, FIT_IMAGES, candidate_grid, fit_budget_schedule,
                                        level_errors)


def calibration_of(run_dir: Path, train_images: np.ndarray, labels, config) -> tuple[torch.Tensor, torch.Tensor]:
    """(model-space training images, their label likelihood p(z_n | y) under the run's final T)
    of a run: what `budget=` fits its schedule on."""
    lik = run_label_likelihood(load_checkpoint(Path(run_dir) / CHECKPOINT_NAME), labels, config)
    return to_model_space(train_images), torch.as_tensor(lik, dtype=torch.float64)


# Model-space images are in [-1, 1]; interpolation or float round-off may overshoot a little.
RANGE_SLACK = 0.01


class DiffusionClassifier:
    """p(y | x) from a class-conditional diffusion model's own denoising errors.

    posterior: how the network evaluations are spent (schedule, number of sigmas, class pruning,
      draws per level); `from_run`'s default: the run's training interval with all classes scored,
      `INFERENCE_DRAWS` draws per level.
    seed: the noise seed; predictions are deterministic for a given seed and batch order.
    calibration: (images (N, C, H, W) in [-1, 1], label likelihood (N, K)) of training images with
      their imprecise labels, for `budget=`; `from_run` reads them from the run when first needed.
    """

    def __init__(self, net, *, posterior: PosteriorConfig, log_prior: torch.Tensor | None = None,
                 class_names: tuple[str, ...] | None = None, seed: int = 0, batch_size: int = 256,
                 device="cpu"):
        self.net = net
        self.posterior = posterior
        self.log_prior = None if log_prior is None else log_prior.to(device)
        self.class_names = class_names or tuple(str(i) for i in range(net.num_classes))
        self.seed = seed
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.last_nfe_per_image = 0
        self.run_dir: Path | None = None
        self.run_step: int | None = None  # the checkpoint step of run_dir's model (stored budget schedules)
        self.store_schedules = True  # read and write budget= schedules in run_dir (False: always fit afresh)
        self.calibration: tuple[torch.Tensor, torch.Tensor] | None = None
        self._grid_errors = None  # (grid, per-level errors, their rows' likelihoods), computed once
        self._budget_schedules: dict[int, PosteriorConfig] = {}

    @classmethod
    def from_run(cls, run_dir: str | Path, *, posterior: PosteriorConfig | None = None, device="cpu",
                 **kwargs) -> "DiffusionClassifier":
        net, ckpt, config = load_model(Path(run_dir), device=device)
        if posterior is None:
            posterior = run_posterior(ckpt, config).replace(keep_classes=None, temperature=float(ckpt["temperature"]),
                                                            draws=INFERENCE_DRAWS)
        names = kwargs.pop("class_names", None) or tuple(ckpt.get("class_names", [])) or None
        clf = cls(net, posterior=posterior, log_prior=ckpt["log_prior"], class_names=names, device=device, **kwargs)
        clf.run_dir = Path(run_dir)
        clf.run_step = int(ckpt["step"])
        return clf

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.net.image_shape)

    def _to_tensor(self, images) -> torch.Tensor:
        """Validated model-space input (N, C, H, W): uint8 (N, H, W, C) pixels, or real numbers
        already in [-1, 1] as (N, C, H, W). ValueError for anything the model would misread."""
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        images = np.asarray(images)
        if images.dtype == np.uint8:
            if images.ndim != 4 or images.shape[-1] != self.image_shape[0]:
                raise ValueError(f"uint8 images must be (N, H, W, C) with C = {self.image_shape[0]}; "
                                 f"got shape {images.shape}")
            x = to_model_space(images)
        elif images.dtype.kind in "iub":
            raise ValueError(f"integer images must be uint8 pixels (0..255); got {images.dtype}: convert them with "
                             ".astype(np.uint8), or pass floats in [-1, 1]")
        elif images.dtype.kind != "f":
            raise ValueError(f"images must be uint8 pixels or real numbers in [-1, 1]; got dtype {images.dtype}")
        else:
            x = torch.as_tensor(images, dtype=torch.float32)
            if x.ndim != 4:
                raise ValueError(f"float images must be (N, C, H, W); got shape {tuple(x.shape)}")
            if not bool(torch.isfinite(x).all()):
                raise ValueError("images contain NaN or inf values; fix or drop those images")
            lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
            if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
                raise ValueError(f"float images must lie in [-1, 1] (model space); these span [{lo:g}, {hi:g}]: "
                                 "pass 0..255 pixels as uint8, or scale them with x / 127.5 - 1")
        if len(x) == 0:
            raise ValueError("no images given: pass at least one")
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"images have shape {tuple(x.shape[1:])} (C, H, W) but the model expects "
                             f"{self.image_shape}; resize/convert them first (wsl-diff classify does this)")
        return x.to(self.device)

    def schedule_for_budget(self, budget: int) -> PosteriorConfig:
        """The schedule used for `budget` network evaluations per image: fitted once per budget on
        up to FIT_IMAGES calibration images (BUDGET_FIT_DRAWS noise draws over a grid of levels, shared
        by all budgets)."""
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
            raise ValueError(f"budget must be a whole number of network evaluations per image; got {budget!r}")
        budget = int(budget)
        stored = self.run_dir is not None and self.store_schedules
        if budget not in self._budget_schedules and stored:
            known = stored_budget_schedules(self.run_dir, step=self.run_step, base=self.posterior)
            self._budget_schedules.update(known)
        if budget not in self._budget_schedules:
            if self._grid_errors is None:
                images, lik = self._calibration()
                gen = torch.Generator().manual_seed(self.seed)
                pick = torch.randperm(len(images), generator=gen)[:FIT_IMAGES]
                grid = candidate_grid(self.posterior)
                errs = torch.stack([level_errors(self.net, images[pick].to(self.device), grid, generator=gen)
                                    for _ in range(BUDGET_FIT_DRAWS)])
                self._grid_errors = (grid, errs, lik[pick])
            grid, errs, lik = self._grid_errors
            log_prior = self.log_prior if self.log_prior is not None else torch.zeros(self.num_classes)
            # The budget's candidates are one-draw schedules: the fit scores single draws, and a
            # budget spends its evaluations on levels and classes, not on repeated draws.
            cfg, info = fit_budget_schedule(errs, grid, lik, log_prior.cpu(), self.posterior.replace(draws=1), budget)
            self._budget_schedules[budget] = cfg
            if stored:
                store_budget_schedule(self.run_dir, step=self.run_step, base=self.posterior, budget=budget,
                                      posterior=cfg, info={**info, "seed": self.seed, "fit_images": len(lik)})
        return self._budget_schedules[budget]

    def _calibration(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.calibration is None:
            if self.run_dir is None:
                raise ValueError("budget= needs calibration images with their labels: load the classifier with "
                                 "DiffusionClassifier.from_run, or set clf.calibration = (images, label likelihood)")
            trained = load_run(self.run_dir)
            train, _ = trained.splits()
            self.calibration = calibration_of(self.run_dir, train.images, trained.labels, trained.config)
        return self.calibration

    def _run(self, images, budget: int | None = None):
        x = self._to_tensor(images)
        cfg = self.posterior if budget is None else self.schedule_for_budget(budget)
        gen = torch.Generator().manual_seed(self.seed)
        probs, errors = [], []
        for start in range(0, len(x), self.batch_size):
            res = diffusion_posterior(self.net, x[start:start + self.batch_size], cfg,
                                      generator=gen, log_prior=self.log_prior)
            probs.append(res.probs.cpu())
            errors.append(res.errors.cpu())
            self.last_nfe_per_image = res.nfe_per_image
        return torch.cat(probs), torch.cat(errors)

    def predict_proba(self, images, *, budget: int | None = None) -> np.ndarray:
        """(N, K) probabilities; rows sum to 1; pruned classes get exactly 0. budget: at most this
        many network evaluations per image, with the schedule `schedule_for_budget` picks."""
        return self._run(images, budget)[0].numpy()

    def predict(self, images, *, budget: int | None = None) -> np.ndarray:
        return self.predict_proba(images, budget=budget).argmax(axis=1)

    def score(self, images, y) -> float:
        """Mean accuracy, like sklearn's ClassifierMixin.score."""
        return float((self.predict(images) == np.asarray(y)).mean())

    def class_errors(self, images) -> np.ndarray:
        """(N, K) weighted per-class denoising errors e_y (lower = more likely); +inf where pruned."""
        return self._run(images)[1].numpy()
