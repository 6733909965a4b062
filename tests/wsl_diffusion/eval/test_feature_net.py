"""The evaluator classifier (determinism, on-disk cache) and sample-quality evaluation of a run."""
import time

import numpy as np
import pytest
import torch

from wsl_diffusion.eval import feature_net as ev_mod
from wsl_diffusion.data.datasets import ArrayDataset, load_digits_split, to_model_space
from wsl_diffusion.model.classifier_nets import ResNet18Cifar, StridedCNN
from wsl_diffusion.eval.feature_net import ClassifierConfig, get_evaluator, train_classifier, train_evaluator

TINY = ClassifierConfig(epochs=0, min_steps=15, width=8)


def test_training_is_deterministic_and_leaves_global_rng_alone(digits_small):
    train, _ = digits_small
    x = to_model_space(train.images[:64])
    state = torch.random.get_rng_state()
    a = train_classifier(x, train.targets[:64], num_classes=10, config=TINY)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = train_classifier(x, train.targets[:64], num_classes=10, config=TINY)
    c = train_classifier(x, train.targets[:64], num_classes=10, config=TINY.replace(seed=1))
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def test_features_do_not_depend_on_the_batch(digits_small):
    train, _ = digits_small
    net = train_classifier(to_model_space(train.images[:32]), train.targets[:32], num_classes=10, config=TINY)
    ev = ev_mod.Evaluator(net, "digits", TINY, tuple(train.class_names), 0.0, 0.0)
    x = to_model_space(train.images[:40])
    f_all, f_small = ev.features(x), ev.features(x, batch_size=7)
    assert f_all.shape == (40, net.feature_dim) and torch.allclose(f_all, f_small, atol=1e-5)
    assert ev.predict(x).shape == (40,)


def test_evaluator_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("WSL_DIFFUSION_CACHE", str(tmp_path))
    first = get_evaluator("digits", config=TINY)
    assert first.path.parent == tmp_path / "evaluators" and first.path.name.startswith("digits-")

    def no_training(*a, **k):
        raise AssertionError("a cached evaluator must not be retrained")

    monkeypatch.setattr(ev_mod, "train_evaluator", no_training)
    second = get_evaluator("digits", config=TINY)
    x = to_model_space(load_digits_split()[1].images[:20])
    assert torch.equal(first.features(x), second.features(x)) and second.test_accuracy == first.test_accuracy
    # Another recipe is another key; a damaged file is retrained and replaced, not fatal.
    assert ev_mod.evaluator_key("digits", load_digits_split()[0], TINY.replace(seed=5)) != first.path.stem
    monkeypatch.setattr(ev_mod, "train_evaluator", train_evaluator)
    first.path.write_bytes(b"not a checkpoint")
    third = get_evaluator("digits", config=TINY)
    assert torch.equal(first.features(x), third.features(x))


def test_evaluator_of_32x32_images_is_a_resnet_and_survives_the_cache(tmp_path):
    """From 32x32 on the evaluator is the CIFAR-stem ResNet-18 (512 features), rebuilt on loading."""
    gen = np.random.default_rng(0)
    names = ("a", "b", "c")
    train = ArrayDataset(gen.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), np.arange(12) % 3, names)
    test = ArrayDataset(gen.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), np.arange(6) % 3, names)
    config = ClassifierConfig(epochs=0, min_steps=2, batch_size=6)
    first = get_evaluator("tiny32", config=config, cache_dir=tmp_path, splits=(train, test))
    assert isinstance(first.net, ResNet18Cifar) and first.feature_dim == 512
    x = to_model_space(test.images)
    assert first.features(x).shape == (6, 512) and first.predict(x).shape == (6,)
    second = get_evaluator("tiny32", config=config, cache_dir=tmp_path, splits=(train, test))
    assert second.path == first.path and isinstance(second.net, ResNet18Cifar)
    assert torch.equal(first.features(x), second.features(x))


def test_evaluator_of_digits_is_the_small_strided_cnn(digits_small):
    train, _ = digits_small
    net = train_classifier(to_model_space(train.images[:16]), train.targets[:16], num_classes=10, config=TINY)
    assert isinstance(net, StridedCNN) and net.feature_dim == 4 * TINY.width


@pytest.mark.slow
def test_evaluator_reaches_95_percent_on_digits_quickly(tmp_path):
    train, test = load_digits_split()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ev = train_evaluator(train, test, dataset="digits")
    assert time.perf_counter() - t0 < 30
    assert ev.test_accuracy >= 0.95


def test_evaluate_samples_on_a_tiny_run(tiny_run, tmp_path):
    from label_models.io import load_labels
    from wsl_diffusion.eval.sample_quality import evaluate_samples, summary_lines
    from wsl_diffusion.run import load_model

    net, _, config = load_model(tiny_run)
    ev = get_evaluator("digits", config=TINY, cache_dir=tmp_path)
    result = evaluate_samples(net, config, labels=load_labels(tiny_run / "labels.npz"), per_class=3, num_steps=4,
                              evaluator=ev, classifier=TINY)
    assert result["num_samples"] == 30 and result["fd_n_fake"] == 30 and result["fd_n_real"] == 1347
    assert result["n_fake_per_class"] == [3] * 10 and len(result["class_details"]) == 10
    for key in ("fd", "cw_fd", "density", "coverage", "cw_density", "cw_coverage", "real_test_fd"):
        assert np.isfinite(result[key]) and result[key] >= 0
    assert 0 <= result["cas"] <= 1 and 0 <= result["sample_accuracy"] <= 1
    text = "\n".join(summary_lines(result))
    assert "n_fake=30" in text and "CW-FD" in text and "CAS" in text


def test_evaluate_samples_of_real_images_beat_noise(tmp_path):
    """Real test images as 'samples' score far better than uniform noise on every metric."""
    from wsl_diffusion.config import TrainConfig
    from wsl_diffusion.eval.sample_quality import evaluate_samples

    train, test = load_digits_split()
    ev = get_evaluator("digits", config=ClassifierConfig(epochs=0, min_steps=150), cache_dir=tmp_path)

    class Stub:  # only the class count is read when samples are given
        num_classes = 10

    config = TrainConfig()
    real = (to_model_space(test.images), torch.as_tensor(test.targets))
    noise = (torch.rand(450, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1, torch.as_tensor(test.targets))
    good = evaluate_samples(Stub(), config, samples=real, evaluator=ev, classifier=TINY)
    bad = evaluate_samples(Stub(), config, samples=noise, evaluator=ev, classifier=TINY)
    assert good["fd"] < bad["fd"] and good["cw_fd"] < bad["cw_fd"]
    assert good["coverage"] > bad["coverage"] and good["cw_density"] > bad["cw_density"]
    assert good["sample_accuracy"] > 0.8 > bad["sample_accuracy"]
    assert good["fd"] == pytest.approx(good["real_test_fd"])  # the same two sets
