"""EDM samplers as pure functions of a denoiser (Karras et al. 2022, Algorithm 1).

The probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma is integrated from sigma_max to 0
on the rho-spaced schedule; Heun adds a second-order correction except on the last step.
Per-image seeds make every image independent of the batch it was drawn in, and of how many other
images are drawn: image i of class c is the same for any batch size, class subset or count per
class. `save_samples_npz` / `load_samples_npz` store samples in the on-disk convention (uint8 NHWC
plus the conditioning labels).
"""
from __future__ import annotations

import math

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B,C,H,W), sigma (B,)) -> x0-hat


def edm_sigma_steps(num_steps: int, *, sigma_min: float = 0.002, sigma_max: float = 80.0,
                    rho: float = 7.0) -> torch.Tensor:
    """Noise levels sigma_0 > ... > sigma_{N-1}, then a final 0. (num_steps + 1,) float64."""
    if num_steps < 1:
        raise ValueError("num_steps must be >= 1")
    i = torch.arange(num_steps, dtype=torch.float64)
    steps = (sigma_max ** (1 / rho) + i / max(num_steps - 1, 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([steps, torch.zeros(1, dtype=torch.float64)])


def initial_noise(seeds: list[int] | np.ndarray, shape: tuple[int, int, int], *, sigma_max: float,
                  device="cpu") -> torch.Tensor:
    """x_T = sigma_max * n with one generator per image seed (batch-independent). (B, C, H, W)"""
    out = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return (torch.stack(out) * sigma_max).to(device)


def _denoise_at(denoise: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """D(x, sigma) evaluated in float32 (the network's precision), returned in x's dtype."""
    return denoise(x.float(), torch.full((x.shape[0],), sigma, device=x.device)).to(x.dtype)


@torch.no_grad()
def euler_sample(denoise: Denoiser, x_init: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """First-order (Euler) integration of dx/dsigma = (x - D(x, sigma)) / sigma along `sigmas`
    (decreasing, last entry 0; e.g. `edm_sigma_steps`). x_init: (B, C, H, W) at sigmas[0].

    Pure: x_init is not modified and the result depends only on the arguments. The state is
    carried in float64 so that round-off does not accumulate over many steps. Returns float32.
    """
    x = x_init.double()
    for s_cur, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        x = x + (s_next - s_cur) * (x - _denoise_at(denoise, x, s_cur)) / s_cur
    return x.float()


@torch.no_grad()
def heun_sample(denoise: Denoiser, x_init: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Second-order Heun integration (EDM Algorithm 1 without churn) along `sigmas`; the step to
    sigma = 0 stays an Euler step (the slope is undefined there). 2 N - 1 denoiser calls for N
    steps. Pure, like `euler_sample`. Returns float32."""
    x = x_init.double()
    for s_cur, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        d_cur = (x - _denoise_at(denoise, x, s_cur)) / s_cur
        x_next = x + (s_next - s_cur) * d_cur
        if s_next > 0:
            d_next = (x_next - _denoise_at(denoise, x_next, s_next)) / s_next
            x_next = x + (s_next - s_cur) * 0.5 * (d_cur + d_next)
        x = x_next
    return x.float()


SOLVERS = {"heun": heun_sample, "euler": euler_sample}


def class_conditional(net, class_ids: torch.Tensor, *, guidance: float = 0.0) -> Denoiser:
    """Bind class labels to a denoiser; guidance w > 0 applies classifier-free guidance:
    D_w = (1 + w) D(x, sigma, y) - w D(x, sigma, no label), the unconditional model being the
    all-zero class vector seen through label dropout in training. The conditional and
    unconditional halves go through the network as one batch."""
    onehot = F.one_hot(class_ids, net.num_classes).float()

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if guidance == 0.0:
            return net(x, sigma, onehot)
        both = net(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([onehot, torch.zeros_like(onehot)]))
        cond, uncond = both.chunk(2)
        return cond + guidance * (cond - uncond)

    return denoise


def image_seed(seed: int, class_id: int, index: int) -> int:
    """The noise seed of image `index` of class `class_id` in a sampling run with `seed`.

    Mixed through numpy's SeedSequence, so distinct (seed, class, index) triples never share a
    stream however many images per class are drawn."""
    return int(np.random.SeedSequence([int(seed), int(class_id), int(index)]).generate_state(1, np.uint64)[0] >> 1)


def sample_per_class(net, *, per_class: int, seed: int = 0, guidance: float = 0.0, num_steps: int = 18,
                     solver: str = "heun", device="cpu", batch_size: int = 256, classes=None,
                     sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` images of every class (or of `classes`), class-major order.

    Image i of class c starts from the noise of `image_seed(seed, c, i)`, so the set does not
    depend on batch_size (nor on which other classes are drawn). Returns (images (n, C, H, W) in
    [-1, 1] clipped, float32 on CPU; labels (n,) int64), n = len(classes) * per_class.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1; got {per_class}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if not (math.isfinite(guidance) and guidance >= 0):
        raise ValueError(f"`guidance` must be a finite number >= 0 (0 = plain conditional sampling); got {guidance}")
    classes = list(range(net.num_classes)) if classes is None else [int(c) for c in classes]
    if any(not 0 <= c < net.num_classes for c in classes):
        raise ValueError(f"classes must lie in [0, {net.num_classes}); got {classes}")
    labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(per_class)
    seeds = [image_seed(seed, c, i) for c in classes for i in range(per_class)]
    steps = edm_sigma_steps(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose {' or '.join(SOLVERS)}")
    out = []
    for start in range(0, len(labels), batch_size):
        sl = slice(start, start + batch_size)
        x = initial_noise(seeds[sl], tuple(net.image_shape), sigma_max=sigma_max, device=device)
        den = class_conditional(net, labels[sl].to(device), guidance=guidance)
        out.append(SOLVERS[solver](den, x, steps).clamp(-1, 1).cpu())
    return torch.cat(out), labels
