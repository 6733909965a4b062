"""EDM samplers as pure functions of a denoiser (Karras et al. 2022, Algorithm 1).

The probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma is integrated from sigma_max to 0
on the rho-spaced schedule; Heun adds a second-order correction except on the last step.
Per-image seeds make every image independent of the batch it was drawn in.
"""
from __future__ import annotations

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


@torch.no_grad()
def edm_sample(denoise: Denoiser, x_init: torch.Tensor, *, num_steps: int = 18, sigma_min: float = 0.002,
               sigma_max: float = 80.0, rho: float = 7.0, solver: str = "heun") -> torch.Tensor:
    """Integrate the probability-flow ODE from x_init (already scaled by sigma_max) to sigma = 0."""
    if solver not in ("heun", "euler"):
        raise ValueError(f"unknown solver {solver!r}; choose heun or euler")
    steps = edm_sigma_steps(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    x = x_init.double()
    b = x.shape[0]
    for i in range(num_steps):
        s_cur, s_next = float(steps[i]), float(steps[i + 1])
        d_cur = (x - denoise(x.float(), torch.full((b,), s_cur, device=x.device)).double()) / s_cur
        x_next = x + (s_next - s_cur) * d_cur
        if solver == "heun" and s_next > 0:
            d_next = (x_next - denoise(x_next.float(), torch.full((b,), s_next, device=x.device)).double()) / s_next
            x_next = x + (s_next - s_cur) * 0.5 * (d_cur + d_next)
        x = x_next
    return x.float()


def class_conditional(net, class_ids: torch.Tensor, *, guidance: float = 0.0) -> Denoiser:
    """Bind class labels to a denoiser; guidance w > 0 applies classifier-free guidance:
    D_w = (1 + w) D(x, sigma, y) - w D(x, sigma, no label), the unconditional model being the
    all-zero class vector seen through label dropout in training."""
    onehot = F.one_hot(class_ids, net.num_classes).float()

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        cond = net(x, sigma, onehot)
        if guidance == 0.0:
            return cond
        uncond = net(x, sigma, torch.zeros_like(onehot))
        return cond + guidance * (cond - uncond)

    return denoise


def sample_per_class(net, *, per_class: int, seed: int = 0, guidance: float = 0.0, num_steps: int = 18,
                     solver: str = "heun", device="cpu", batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` images of every class. Image i of class c uses seed (seed, c, i) mixed into an
    integer, so the set does not depend on batch_size. Returns (images (K*per_class, C, H, W) in
    [-1, 1] clipped, labels (K*per_class,))."""
    k = net.num_classes
    labels = torch.arange(k).repeat_interleave(per_class)
    seeds = [seed * 1_000_003 + c * 10_007 + i for c in range(k) for i in range(per_class)]
    out = []
    for start in range(0, len(labels), batch_size):
        sl = slice(start, start + batch_size)
        x = initial_noise(seeds[sl], tuple(net.image_shape), sigma_max=80.0, device=device)
        den = class_conditional(net, labels[sl].to(device), guidance=guidance)
        out.append(edm_sample(den, x, num_steps=num_steps, solver=solver).clamp(-1, 1).cpu())
    return torch.cat(out), labels


def image_grid(images: torch.Tensor, *, rows: int) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 grid (rows*H, cols*W, C) with a 1-pixel gap."""
    n, c, h, w = images.shape
    cols = -(-n // rows)
    grid = np.zeros((rows * (h + 1) - 1, cols * (w + 1) - 1, c), dtype=np.uint8)
    imgs = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    for idx in range(n):
        r, col = divmod(idx, cols)
        grid[r * (h + 1): r * (h + 1) + h, col * (w + 1): col * (w + 1) + w] = imgs[idx]
    return grid


def save_png(array_hwc: np.ndarray, path, *, upscale: int = 1) -> None:
    """Write a uint8 (H, W, C) array as PNG (C = 1 or 3), optionally enlarged by pixel repetition."""
    from PIL import Image

    arr = array_hwc.repeat(upscale, 0).repeat(upscale, 1) if upscale > 1 else array_hwc
    img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    img.save(path)
