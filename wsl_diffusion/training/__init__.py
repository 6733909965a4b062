"""The training loop (vanilla conditional diffusion and DMIS), its losses, DDP helpers and progress bar."""
