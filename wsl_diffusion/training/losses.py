"""Training losses. Every loss returns an UNREDUCED per-sample tensor (B,); the loop reduces.

Generative terms (design.md §2), all in EDM's weighting lambda(sigma) = (sigma^2 + sd^2)/(sigma sd)^2
and averaged over pixels:
  vanilla           lambda || D(x, sigma, z) - x0 ||^2                   (z taken as if clean)
  DMIS, "wdsm"      lambda || sum_y w_y D(x, sigma, y) - x0 ||^2          (paper's Eq. 10)
  DMIS, "em"        lambda sum_y w_y || D(x, sigma, y) - x0 ||^2          (Eq. 7's M-step)
Both DMIS forms have the clean-label denoisers as optimum when w is the exact posterior; with
one-hot w both equal the vanilla loss (tested).

Classification terms act on log f_theta over the kept classes (B, k):
  partial / semi    soft cross-entropy to the EMA posterior restricted by z (EMA-PRODEN / mean
                    teacher: the targets differ only through the label likelihood, not the code)
  noisy             ELR-rectified target r = onehot(z) - f_theta * (delta - f_phi) / (1 - delta)
  pu                non-negative PU risk (Kiryo et al. 2017) with the class prior (batch-level)
"""
from __future__ import annotations

import torch

GEN_FORMS = ("em", "wdsm")


def sample_sigma(batch: int, *, generator: torch.Generator, p_mean: float = -1.2,
                 p_std: float = 1.2) -> torch.Tensor:
    """EDM training noise levels: ln sigma ~ N(p_mean, p_std^2). (B,) on the generator's device."""
    return (torch.randn(batch, generator=generator) * p_std + p_mean).exp()


def loss_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2, the EDM weight that makes the loss unit-scale."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def _pixels(x0: torch.Tensor) -> int:
    return x0[0].numel()


def vanilla_loss(sq_err: torch.Tensor, sigma: torch.Tensor, x0: torch.Tensor, *,
                 sigma_data: float = 0.5) -> torch.Tensor:
    """Conditional DSM on the observed label. sq_err: (B, 1) or (B,) summed over pixels -> (B,)."""
    return loss_weight(sigma, sigma_data) * sq_err.reshape(sq_err.shape[0], -1)[:, 0] / _pixels(x0)


def dmis_generative_loss(*, form: str, weights: torch.Tensor, sq_err: torch.Tensor,
                         denoised: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor,
                         sigma_data: float = 0.5) -> torch.Tensor:
    """The DMIS generative loss of the kept classes. -> (B,)

    weights: (B, k) posterior weights of the kept classes, rows summing to 1, no gradient.
    sq_err: (B, k) summed squared errors of each kept class; denoised: (B, k, C, H, W) — both from
    the same single K-way forward (`precond.denoising_error`).
    """
    if form not in GEN_FORMS:
        raise ValueError(f"unknown generative form {form!r}; choose one of {', '.join(GEN_FORMS)}")
    weights = weights.detach()
    if form == "em":
        per_sample = (weights * sq_err).sum(dim=1)
    else:
        mixed = (weights[:, :, None, None, None] * denoised).sum(dim=1)  # (B, C, H, W)
        per_sample = (mixed - x0).pow(2).flatten(1).sum(dim=1)
    return loss_weight(sigma, sigma_data) * per_sample / _pixels(x0)


def topk_classes(weights: torch.Tensor, k: int, *, tie_break: torch.Tensor | None = None,
                 jitter: torch.Tensor | None = None):
    """Keep the k largest posterior weights per row and renormalise them.

    weights: (B, K) rows summing to 1. Classes of equal weight (e.g. the zero-weight classes
    outside a one-hot label, or every candidate of a flat table) are ordered by `tie_break`, then
    by `jitter`: tie_break (B, K) in [0, 1], the unrestricted EMA posterior, so the extra kept
    classes are the most confusable ones; jitter (B, K) uniform draws, so what remains tied is
    broken at random instead of by class index. The comparison is lexicographic (float64), so
    neither can overturn a real difference in weight.
    Returns (classes (B, k) long, kept_weights (B, k) summing to 1). Classes outside cost nothing.
    """
    num_classes = weights.shape[1]
    if not 1 <= k <= num_classes:
        raise ValueError(f"top-k must be between 1 and the number of classes ({num_classes}), got {k}")
    score = weights
    if tie_break is not None or jitter is not None:
        score = weights.double()
        if tie_break is not None:
            score = score + 1e-6 * tie_break.double()
        if jitter is not None:
            score = score + 1e-12 * jitter.double()
    classes = score.topk(k, dim=1).indices
    kept = weights.gather(1, classes)
    total = kept.sum(dim=1, keepdim=True)
    # A row whose mass lies entirely outside the top k cannot happen (the top k hold the largest
    # weights), but guard against all-zero rows from a degenerate table.
    kept = torch.where(total > 0, kept / total.clamp_min(1e-12), torch.full_like(kept, 1.0 / k))
    return classes, kept


def restrict_posterior(probs: torch.Tensor, label_likelihood: torch.Tensor) -> torch.Tensor:
    """w_y ∝ p(z | y) p_phi(y | x): the EMA posterior restricted by the imprecise label. (B, K).

    label_likelihood[n, y] = p(z_n | y): candidate mask (partial), one-hot (labelled), all-ones
    (unlabelled), or T[y, z_n] (noisy). If the posterior puts no mass where the label allows
    (possible early in training), fall back to the label likelihood alone.
    """
    w = probs * label_likelihood
    total = w.sum(dim=1, keepdim=True)
    fallback = label_likelihood / label_likelihood.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.where(total > 1e-12, w / total.clamp_min(1e-30), fallback)


def classifier_logits(sq_err: torch.Tensor, sigma: torch.Tensor, *, log_prior: torch.Tensor | None = None,
                      width: float = 1.0) -> torch.Tensor:
    """One-sigma diffusion-classifier logits from the training forward: -width * err / sigma^2.

    The ELBO integrand at the sampled sigma times the log-width of the classifier interval it
    stands for (an estimate of that part of the integral, in nats). sq_err: (B, k); sigma: (B,).
    """
    logits = -width * sq_err / sigma.view(-1, 1) ** 2
    return logits if log_prior is None else logits + log_prior


def soft_target_loss(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-sum_y target_y log f_theta(y). EMA-PRODEN (partial) and mean teacher (semi). -> (B,)"""
    return -(target.detach() * log_probs).sum(dim=1)


def forward_corrected_loss(log_probs: torch.Tensor, transition_rows: torch.Tensor) -> torch.Tensor:
    """Forward-corrected cross-entropy for noisy labels: -log sum_y T[y, z] f_theta(y). -> (B,)

    log_probs: (B, k) log f_theta over the kept classes; transition_rows: (B, k) T[y, z_n] for
    those classes. The model is trained to predict the *clean* class so that, pushed through
    the noise process, it explains the observed label (Patrini et al. 2017): with the right T
    its minimiser is the clean posterior, where plain or rectified cross-entropy on z is pulled
    toward structured flips.
    """
    return -torch.logsumexp(log_probs + transition_rows.clamp_min(1e-12).log(), dim=1)


def elr_loss(log_probs: torch.Tensor, ema_probs: torch.Tensor, observed_onehot: torch.Tensor,
             lam: float = 1.0) -> torch.Tensor:
    """ELR-style rectified-target cross-entropy for noisy labels. -> (B,)

    r = onehot(z) - lam * f_theta * (delta - f_phi) / (1 - delta), delta = <f_theta, f_phi>:
    where the EMA model agrees with the current model against the noisy label, the target moves
    away from it. r is a stop-gradient target, and its gradient is that of
    CE(z) + lam * log(1 - delta) (r sums to 1 whatever lam is).
    """
    p = log_probs.exp().detach()
    q = ema_probs.detach()
    delta = (p * q).sum(dim=1, keepdim=True).clamp(max=1 - 1e-4)
    r = observed_onehot - lam * p * (delta - q) / (1 - delta)
    return -(r * log_probs).sum(dim=1)


def nnpu_loss(log_probs: torch.Tensor, is_labelled: torch.Tensor, prior_positive: float) -> torch.Tensor:
    """Non-negative PU risk on the posterior (binary: class 1 = positive). A scalar.

    R = pi E_P[-log f(+)] + max(0, E_A[-log f(-)] - pi E_P[-log f(-)]), pi the share of positives
    among all images. Labelled samples are positives (P); A is every sample of the batch, a
    sample of all images, whose positive share is pi. The unlabelled samples alone are not: the
    labelled positives were taken out of them, so their positive share is pi (1 - c) / (1 - pi c)
    (0.33 on digits pu-even, against pi = 0.5), and subtracting pi E_P from their mean removed
    more positive mass than they hold, which made calling an image positive too cheap
    (validation: +0.037 nats/row for A = every sample, `select/pu_nnpu_all.md`). Batch-level.
    """
    pos = is_labelled.bool()
    zero = log_probs.sum() * 0.0
    risk_pos = -log_probs[pos, 1].mean() if pos.any() else zero
    neg_on_pos = -log_probs[pos, 0].mean() if pos.any() else zero
    neg_on_all = -log_probs[:, 0].mean()
    return prior_positive * risk_pos + torch.clamp(neg_on_all - prior_positive * neg_on_pos, min=0.0)
