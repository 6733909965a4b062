"""The model layer: data, EDM denoiser, DMIS losses, diffusion posterior, sampling, training."""
