"""The denoiser network and its EDM preconditioning; the classifier networks of the baselines and the evaluator."""
