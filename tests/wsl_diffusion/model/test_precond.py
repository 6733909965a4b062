import pytest
import torch
import torch.nn.functional as F

from wsl_diffusion.model.network import PRESETS
from wsl_diffusion.model.precond import EDMDenoiser, denoise_classes, denoising_error, precond_coefficients


def test_precond_unit_variance_identities():
    """EDM's choices give the backbone unit-variance input and unit-variance target at every sigma."""
    sd = 0.5
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(200_000, generator=g) * sd
    n = torch.randn(200_000, generator=g)
    for s in [0.01, 0.3, 1.0, 10.0, 80.0]:
        sigma = torch.tensor(s)
        c_skip, c_out, c_in, c_noise = precond_coefficients(sigma, sd)
        x = x0 + s * n
        assert torch.var(c_in * x).item() == pytest.approx(1.0, rel=0.02)
        target = (x0 - c_skip * x) / c_out  # what F must output for D to be exact
        assert torch.var(target).item() == pytest.approx(1.0, rel=0.02)
        assert c_noise.item() == pytest.approx(torch.log(sigma).item() / 4)
    # limits: no noise -> pass-through; huge noise -> output comes from F, input ignored
    c_skip, c_out, _, _ = precond_coefficients(torch.tensor(1e-6), sd)
    assert c_skip.item() == pytest.approx(1.0) and c_out.item() == pytest.approx(0.0, abs=1e-5)
    c_skip, c_out, _, _ = precond_coefficients(torch.tensor(1e4), sd)
    assert c_skip.item() == pytest.approx(0.0, abs=1e-8) and c_out.item() == pytest.approx(sd, rel=1e-6)


def test_zero_initialised_net_is_c_skip_times_input():
    net = EDMDenoiser(image_shape=(1, 8, 8), num_classes=3, config=PRESETS["tiny"])
    x = torch.randn(5, 1, 8, 8)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 5.0])
    c_skip = precond_coefficients(sigma)[0].view(-1, 1, 1, 1)
    out = net(x, sigma, F.one_hot(torch.arange(5) % 3, 3).float())
    torch.testing.assert_close(out, c_skip * x)  # the output conv starts at zero


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 9), (3, 32, 32)])
def test_any_image_size(shape):
    net = EDMDenoiser(image_shape=shape, num_classes=4, config=PRESETS["tiny"])
    torch.nn.init.normal_(net.net.out_conv.weight)  # make the output depend on the backbone
    out = net(torch.randn(2, *shape), torch.ones(2), torch.zeros(2, 4))
    assert out.shape == (2, *shape) and torch.isfinite(out).all()


def test_k_way_forward_equals_separate_forwards():
    torch.manual_seed(0)
    net = EDMDenoiser(image_shape=(1, 8, 8), num_classes=5, config=PRESETS["tiny"])
    for p in net.parameters():  # random weights everywhere so every layer matters
        torch.nn.init.normal_(p, std=0.1)
    x0 = torch.randn(3, 1, 8, 8)
    noise = torch.randn(3, 1, 8, 8)
    sigma = torch.tensor([0.2, 1.0, 3.0])
    classes = torch.tensor([[0, 4, 2], [1, 1, 3], [2, 0, 4]])
    onehots = F.one_hot(classes, 5).float()
    sq_err, denoised = denoising_error(net, x0, onehots, sigma, noise)
    x = x0 + sigma.view(-1, 1, 1, 1) * noise
    for j in range(3):
        separate = net(x, sigma, onehots[:, j])
        torch.testing.assert_close(denoised[:, j], separate, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sq_err[:, j], (separate - x0).pow(2).flatten(1).sum(1), rtol=1e-5, atol=1e-5)
    assert denoise_classes(net, x, sigma, onehots).shape == (3, 3, 1, 8, 8)


def test_label_vector_changes_output():
    torch.manual_seed(1)
    net = EDMDenoiser(image_shape=(1, 8, 8), num_classes=3, config=PRESETS["tiny"])
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(1, 1, 8, 8)
    outs = [net(x, torch.ones(1), v[None]) for v in torch.eye(3)]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])
