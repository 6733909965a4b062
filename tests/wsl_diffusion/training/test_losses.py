import pytest
import torch
import torch.nn.functional as F

from wsl_diffusion.training.losses import (dmis_generative_loss, elr_loss, forward_corrected_loss, loss_weight, nnpu_loss, restrict_posterior,
                                  soft_target_loss, topk_classes, vanilla_loss)
from wsl_diffusion.model.network import PRESETS
from wsl_diffusion.model.precond import EDMDenoiser, denoising_error


@pytest.fixture
def random_net():
    torch.manual_seed(0)
    net = EDMDenoiser(image_shape=(1, 8, 8), num_classes=4, config=PRESETS["tiny"])
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return net


@pytest.mark.parametrize("form", ["em", "wdsm"])
def test_dmis_with_one_hot_weights_equals_vanilla(random_net, form):
    """With the true class at weight 1, both DMIS forms ARE the vanilla conditional loss."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(6, 1, 8, 8, generator=g)
    noise = torch.randn(6, 1, 8, 8, generator=g)
    sigma = torch.rand(6, generator=g) * 3 + 0.05
    z = torch.tensor([0, 1, 2, 3, 0, 1])
    sq_van, _ = denoising_error(random_net, x0, F.one_hot(z, 4).float()[:, None], sigma, noise)
    vanilla = vanilla_loss(sq_van, sigma, x0)

    # kept classes: the label first plus one other class carrying weight 0
    classes = torch.stack([z, (z + 1) % 4], dim=1)
    weights = torch.tensor([[1.0, 0.0]]).expand(6, 2)
    sq, den = denoising_error(random_net, x0, F.one_hot(classes, 4).float(), sigma, noise)
    dmis = dmis_generative_loss(form=form, weights=weights, sq_err=sq, denoised=den, x0=x0, sigma=sigma)
    torch.testing.assert_close(dmis, vanilla, rtol=1e-5, atol=1e-6)


def test_em_minus_wdsm_is_the_weighted_spread_of_the_class_outputs(random_net):
    """Bias-variance identity: sum_y w_y ||D_y - x0||^2 - ||sum_y w_y D_y - x0||^2
    = sum_y w_y ||D_y - Dbar||^2 with Dbar = sum_y w_y D_y. So EM >= WDSM, with equality only when
    the class-conditioned outputs agree."""
    torch.nn.init.normal_(random_net.net.class_embed.weight, std=2.0)  # make the class matter
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(5, 1, 8, 8, generator=g)
    noise = torch.randn(5, 1, 8, 8, generator=g)
    sigma = torch.full((5,), 1.0)
    classes = torch.tensor([[0, 1]] * 5)
    w = torch.tensor([[0.6, 0.4]] * 5)
    sq, den = denoising_error(random_net, x0, F.one_hot(classes, 4).float(), sigma, noise)
    em = dmis_generative_loss(form="em", weights=w, sq_err=sq, denoised=den, x0=x0, sigma=sigma)
    wdsm = dmis_generative_loss(form="wdsm", weights=w, sq_err=sq, denoised=den, x0=x0, sigma=sigma)
    d = den.double()
    mean = (w.double()[:, :, None, None, None] * d).sum(1, keepdim=True)
    spread = (w.double() * (d - mean).pow(2).flatten(2).sum(-1)).sum(1)
    expected_gap = loss_weight(sigma).double() * spread / 64
    torch.testing.assert_close((em - wdsm).double(), expected_gap, rtol=1e-3, atol=1e-6)
    assert (expected_gap > 1e-4).all()  # the outputs really differ, so the check has teeth


def test_loss_weight_formula():
    sigma = torch.tensor([0.1, 0.5, 2.0])
    expected = (sigma**2 + 0.25) / (sigma**2 * 0.25)
    torch.testing.assert_close(loss_weight(sigma), expected)


def test_topk_keeps_largest_and_renormalises():
    w = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 1.0, 0.0]])
    classes, kept = topk_classes(w, 2)
    assert classes[0].tolist() == [1, 2]
    torch.testing.assert_close(kept[0], torch.tensor([0.5, 0.3]) / 0.8)
    torch.testing.assert_close(kept.sum(1), torch.ones(3))
    # ties among zero-weight classes are broken by the unrestricted posterior
    tie = torch.tensor([[0.0] * 4, [0.0] * 4, [0.1, 0.0, 0.2, 0.7]])
    classes, kept = topk_classes(w, 2, tie_break=tie)
    assert classes[2].tolist() == [2, 3] and kept[2].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="top-k"):
        topk_classes(w, 5)


def test_topk_breaks_remaining_ties_by_jitter_not_by_class_index():
    flat = torch.full((4000, 4), 0.25)  # a flat table: every class tied
    jitter = torch.rand(4000, 4, generator=torch.Generator().manual_seed(0))
    classes, kept = topk_classes(flat, 2, tie_break=flat, jitter=jitter)
    counts = torch.bincount(classes.flatten(), minlength=4).float() / classes.numel()
    torch.testing.assert_close(counts, torch.full((4,), 0.25), atol=0.02, rtol=0)  # index order: [0.5, 0.5, 0, 0]
    torch.testing.assert_close(kept, torch.full((4000, 2), 0.5))
    # the jitter never overturns a real difference in weight, nor the tie-break's order
    w = torch.tensor([[0.2500001, 0.25, 0.25, 0.2499999]])
    assert topk_classes(w, 1, jitter=torch.tensor([[0.0, 1.0, 1.0, 1.0]]))[0].item() == 0
    tie = torch.tensor([[0.0, 0.1, 0.0, 0.0]])
    assert topk_classes(torch.full((1, 4), 0.25), 1, tie_break=tie, jitter=torch.tensor([[1.0, 0, 1, 1]]))[0].item() == 1


def test_permuting_the_classes_permutes_the_selection_and_the_restriction():
    """Nothing depends on class index order: relabel the classes of every input and the kept
    classes and weights are the relabelled ones."""
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(64, 6, generator=g), dim=1)
    lik = (torch.rand(64, 6, generator=g) < 0.5).float()
    lik[:, 0] = 1.0  # no empty candidate set
    table = torch.softmax(torch.randn(64, 6, generator=g), dim=1)
    jitter = torch.rand(64, 6, generator=g)
    perm = torch.tensor([3, 5, 0, 1, 4, 2])  # new class c is old class perm[c]
    w = restrict_posterior(probs, lik)
    w_p = restrict_posterior(probs[:, perm], lik[:, perm])
    torch.testing.assert_close(w_p, w[:, perm])
    classes, kept = topk_classes(w, 3, tie_break=table, jitter=jitter)
    classes_p, kept_p = topk_classes(w_p, 3, tie_break=table[:, perm], jitter=jitter[:, perm])
    assert torch.equal(perm[classes_p], classes)
    torch.testing.assert_close(kept_p, kept)


def test_forward_correction_is_the_likelihood_of_the_observed_label():
    log_probs = torch.log(torch.tensor([[0.7, 0.3]]))
    t_rows = torch.tensor([[0.6, 0.1]])  # T[y, z] for the two kept classes
    torch.testing.assert_close(forward_corrected_loss(log_probs, t_rows), -torch.log(torch.tensor([0.7 * 0.6 + 0.3 * 0.1])))


def test_topk_all_classes_is_identity():
    w = torch.softmax(torch.randn(7, 5), dim=1)
    classes, kept = topk_classes(w, 5)
    torch.testing.assert_close(torch.zeros_like(w).scatter(1, classes, kept), w)


def test_restrict_posterior_is_bayes_rule():
    probs = torch.tensor([[0.5, 0.3, 0.2]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    torch.testing.assert_close(restrict_posterior(probs, mask), torch.tensor([[0.0, 0.6, 0.4]]))
    # noisy-label likelihood T[:, z]
    t = torch.tensor([[0.8, 0.2, 0.0], [0.1, 0.8, 0.1], [0.0, 0.2, 0.8]])
    lik = t[:, 1][None]
    expected = probs * lik / (probs * lik).sum()
    torch.testing.assert_close(restrict_posterior(probs, lik), expected)
    # no overlap -> fall back to the label likelihood
    out = restrict_posterior(torch.tensor([[1.0, 0.0, 0.0]]), mask)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.5, 0.5]]))


def test_soft_target_loss_minimised_at_target():
    target = torch.tensor([[0.7, 0.3]])
    losses = [soft_target_loss(torch.log(torch.tensor([[p, 1 - p]])), target).item() for p in (0.5, 0.7, 0.9)]
    assert losses[1] < losses[0] and losses[1] < losses[2]


def test_elr_reduces_to_ce_when_models_disagree_completely():
    """If f_theta and f_phi are orthogonal (delta = 0), r = onehot(z) + f_theta * f_phi = onehot(z)."""
    logp = torch.log(torch.tensor([[0.9, 0.1, 0.0 + 1e-12]]))
    ema = torch.tensor([[0.0, 0.0, 1.0]])
    obs = torch.tensor([[0.0, 1.0, 0.0]])
    torch.testing.assert_close(elr_loss(logp, ema, obs), -logp[:, 1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lam", [0.0, 1.0, 3.0])
def test_elr_rectified_target_has_the_gradient_of_ce_plus_lam_log_one_minus_agreement(lam):
    """The stop-gradient target r = onehot(z) - lam f (delta - q) / (1 - delta) must give, with
    respect to the logits, exactly the gradient of CE(z) + lam log(1 - <f, q>) (ELR's loss): r sums
    to 1 for any lam, so d(-r . log f) / d logits = f - r."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64)
    q = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    obs = F.one_hot(torch.tensor([0, 1, 2, 3, 1]), 4).double()

    a = logits.clone().requires_grad_()
    elr_loss(torch.log_softmax(a, dim=1), q, obs, lam=lam).sum().backward()
    b = logits.clone().requires_grad_()
    log_f = torch.log_softmax(b, dim=1)
    (-(obs * log_f).sum(1) + lam * torch.log(1 - (log_f.exp() * q).sum(1))).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_nnpu_over_every_image_is_the_pn_risk_when_labelled_positives_were_taken_from_the_data():
    """8 images, 4 positives (pi = 0.5), 2 of them labelled; the unlabelled rows are 2 positives
    and 4 negatives (positive share 1/3, not pi). With f the same on every positive and on every
    negative, the nnPU risk equals the PN risk with the true labels, pi E_P[-log f(+)] +
    (1 - pi) E_N[-log f(-)], only when its negative term averages over every image; over the
    unlabelled rows alone it would subtract more positive mass than they hold."""
    logp = torch.log(torch.tensor([[0.1, 0.9]] * 4 + [[0.8, 0.2]] * 4))  # 4 positives, then 4 negatives
    labelled = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0])
    risk = nnpu_loss(logp, labelled, 0.5)
    pn = 0.5 * -torch.log(torch.tensor(0.9)) + 0.5 * -torch.log(torch.tensor(0.8))
    torch.testing.assert_close(risk, pn, rtol=1e-5, atol=1e-6)
    unlabelled_only = (0.5 * -torch.log(torch.tensor(0.9))
                       + torch.clamp(-logp[2:, 0].mean() - 0.5 * -logp[:2, 0].mean(), min=0))
    assert abs(float(unlabelled_only - pn)) > 0.1  # the old estimate (clamped at 0 here) was off on this very batch
    # an over-fitted model whose negative risk estimate goes negative is clamped at zero
    bad = nnpu_loss(torch.log(torch.tensor([[0.5, 0.5]] * 4 + [[0.99, 0.01]] * 4)), labelled, 0.99)
    assert bad.item() >= 0.99 * -torch.log(torch.tensor(0.5)).item() - 1e-6
