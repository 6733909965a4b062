"""EDM preconditioning (Karras et al. 2022, Table 1) and the class-batched denoiser call.

    D(x, sigma, y) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma), y)
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),   c_noise = ln(sigma) / 4,      sd = sigma_data = 0.5.

With these choices the backbone's input and its training target both have unit variance at every
noise level, which is why one network can serve sigma from 0.002 to 80.
"""
from __future__ import annotations

import torch
from torch import nn

from wsl_diffusion.model.network import NetworkConfig, UNet

SIGMA_DATA = 0.5


def precond_coefficients(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA):
    """Return (c_skip, c_out, c_in, c_noise), each with the shape of `sigma`."""
    s2 = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / s2
    c_out = sigma * sigma_data / s2.sqrt()
    c_in = 1.0 / s2.sqrt()
    c_noise = sigma.log() / 4.0
    return c_skip, c_out, c_in, c_noise


class EDMDenoiser(nn.Module):
    """The clean-label denoiser D(x, sigma, class_vector) ~ E[x0 | x, y].

    x: (B, C, H, W); sigma: (B,) or scalar; class_vector: (B, K) float. Returns (B, C, H, W).
    """

    def __init__(self, *, image_shape: tuple[int, int, int], num_classes: int,
                 config: NetworkConfig, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.sigma_data = sigma_data
        self.net = UNet(image_channels=image_shape[0], num_classes=num_classes, config=config)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_vector: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = (c.view(-1, 1, 1, 1) for c in precond_coefficients(sigma, self.sigma_data))
        f = self.net((c_in * x).to(x.dtype), c_noise.reshape(-1), class_vector)
        return c_skip * x + c_out * f.to(torch.float32)


def denoise_classes(net: nn.Module, x: torch.Tensor, sigma: torch.Tensor, class_vectors: torch.Tensor) -> torch.Tensor:
    """Denoise the same noisy images under k class conditions in ONE batched forward.

    x: (B, C, H, W); sigma: (B,); class_vectors: (B, k, K) float.
    Returns (B, k, C, H, W): out[b, j] = D(x[b], sigma[b], class_vectors[b, j]).
    """
    b, k = class_vectors.shape[:2]
    x_rep = x.unsqueeze(1).expand(b, k, *x.shape[1:]).reshape(b * k, *x.shape[1:])
    sigma_rep = sigma.reshape(b, 1).expand(b, k).reshape(b * k)
    out = net(x_rep, sigma_rep, class_vectors.reshape(b * k, -1))
    return out.view(b, k, *x.shape[1:])


def denoising_error(net: nn.Module, x0: torch.Tensor, class_vectors: torch.Tensor,
                    sigma: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared denoising error of x0 under k class conditions, shared noise across classes.

    The pure core that both the training losses and the diffusion classifier call: drawing sigma
    and noise is the caller's job, so the classifier reuses exactly the training computation.

    x0, noise: (B, C, H, W); sigma: (B,); class_vectors: (B, k, K).
    Returns (sq_err (B, k) summed over pixels, denoised (B, k, C, H, W)).
    """
    x = x0 + sigma.view(-1, 1, 1, 1) * noise
    denoised = denoise_classes(net, x, sigma, class_vectors)
    sq_err = (denoised - x0.unsqueeze(1)).pow(2).flatten(2).sum(-1)
    return sq_err, denoised
