"""An sklearn-style estimator around a trained run: the diffusion model IS the classifier.

    from wsl_diffusion.classifier import DiffusionClassifier
    clf = DiffusionClassifier.from_run("runs/partial")          # no fit: load and go
    probs = clf.predict_proba(images)    # images: uint8 (N, H, W, C) or float (N, C, H, W) in [-1, 1]
    clf.predict(images), clf.score(images, y)
    errors = clf.class_errors(images)    # (N, K) weighted denoising errors (nats with "elbo" weights)

Probabilities are p(y | x) = softmax(-e_y / tau + log prior_y) with the run's class prior and
temperature (both estimated during training from the imprecise labels alone), unless overridden.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wsl_diffusion.data.datasets import to_model_space
from wsl_diffusion.posterior import PosteriorConfig, diffusion_posterior
from wsl_diffusion.run import load_model, run_posterior


# Model-space images are in [-1, 1]; interpolation or float round-off may overshoot a little.
RANGE_SLACK = 0.01


class DiffusionClassifier:
    """p(y | x) from a class-conditional diffusion model's own denoising errors.

    posterior: how the network evaluations are spent (schedule, number of sigmas, class pruning);
      default: the run's training interval with all classes scored.
    seed: the noise seed; predictions are deterministic for a given seed and batch order.
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

    @classmethod
    def from_run(cls, run_dir: str | Path, *, posterior: PosteriorConfig | None = None, device="cpu",
                 **kwargs) -> "DiffusionClassifier":
        net, ckpt, config = load_model(Path(run_dir), device=device)
        if posterior is None:
            posterior = run_posterior(ckpt, config).replace(keep_classes=None, temperature=float(ckpt["temperature"]))
        names = kwargs.pop("class_names", None) or tuple(ckpt.get("class_names", [])) or None
        return cls(net, posterior=posterior, log_prior=ckpt["log_prior"], class_names=names, device=device, **kwargs)

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

    def _run(self, images):
        x = self._to_tensor(images)
        gen = torch.Generator().manual_seed(self.seed)
        probs, errors = [], []
        for start in range(0, len(x), self.batch_size):
            res = diffusion_posterior(self.net, x[start:start + self.batch_size], self.posterior,
                                      generator=gen, log_prior=self.log_prior)
            probs.append(res.probs.cpu())
            errors.append(res.errors.cpu())
            self.last_nfe_per_image = res.nfe_per_image
        return torch.cat(probs), torch.cat(errors)

    def predict_proba(self, images) -> np.ndarray:
        """(N, K) probabilities; rows sum to 1; pruned classes get exactly 0."""
        return self._run(images)[0].numpy()

    def predict(self, images) -> np.ndarray:
        return self.predict_proba(images).argmax(axis=1)

    def score(self, images, y) -> float:
        """Mean accuracy, like sklearn's ClassifierMixin.score."""
        return float((self.predict(images) == np.asarray(y)).mean())

    def class_errors(self, images) -> np.ndarray:
        """(N, K) weighted per-class denoising errors e_y (lower = more likely); +inf where pruned."""
        return self._run(images)[1].numpy()
