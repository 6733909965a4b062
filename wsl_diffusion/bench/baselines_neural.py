"""The neural baselines: a classifier network trained with weak-supervision losses.

Cross-entropy on the naive training set (`cnn_ce`), forward loss correction (`cnn_forward`),
early-learning regularisation (`cnn_elr`), PRODEN (`cnn_proden`) and the non-negative PU risk
(`cnn_nnpu`). The network is
`model.classifier_nets.classifier_backbone(..., small="pool")`: the small pooling CNN below 32x32
(digits), the CIFAR-stem ResNet-18 the ELR / PRODEN papers use from 32x32 on. Every function is a
baseline `run(train_data, labels, test_data, *, seed) -> {"accuracy", "train_seconds", ...}`; the
catalogue of names is `bench.baselines.REGISTRY`.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from label_models.transition import estimate_transition_anchor

from wsl_diffusion.bench.baseline_common import (baseline_rng, check_inputs, label_space_targets,
                                                 naive_training_set)
from wsl_diffusion.bench.baselines_sklearn import class_scores, fit_estimator, make_estimator
from wsl_diffusion.data.datasets import ArrayDataset, flat_features, to_model_space
from wsl_diffusion.model.classifier_nets import classifier_backbone
from wsl_diffusion.training.losses import nnpu_loss
from wsl_diffusion.training.pu_prior import estimate_pu_prior

CNN_EPOCHS = 20
CNN_BATCH = 64
CNN_LR = 1e-3
CNN_WIDTH = 32
PREDICT_BATCH = 512


def train_conv_net(images: torch.Tensor, num_classes: int, loss_fn, *, seed: int, epochs: int = CNN_EPOCHS,
                   batch_size: int = CNN_BATCH, lr: float = CNN_LR) -> nn.Module:
    """Fit a fresh `classifier_backbone(small="pool")` network with Adam (cosine-decayed learning
    rate) on images (N, C, H, W) in [-1, 1]; returns the model in eval mode.

    loss_fn(logits (B, K), idx (B,) int64 row indices) -> scalar: the loss closes over its own
    per-row state (targets, PRODEN weights, ELR's running predictions) and may update it.
    Weights and batch order come from torch generators seeded by `seed`; global RNG untouched.

    Not `eval.feature_net.train_classifier`'s loop: this one reshuffles per epoch, skips a final
    batch of one (BatchNorm) and takes a per-row loss; that one streams batches across epochs with
    a minimum step count, augments, and uses AdamW. One shared loop would change the batch order,
    hence the digits numbers of one of them.
    """
    net = classifier_backbone(tuple(images.shape[1:]), num_classes, small="pool", width=CNN_WIDTH, seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    order_gen = torch.Generator().manual_seed(seed + 1)
    n = images.shape[0]
    # Decaying to zero makes the end point a settled model rather than one noisy-label batch away
    # from a different one (with constant lr the test accuracy under noise swings by 5-10 points).
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * -(-n // batch_size)))
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order_gen)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            if idx.numel() < 2:  # BatchNorm needs more than one sample
                continue
            loss = loss_fn(net(images[idx]), idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def _cnn_accuracy(net: nn.Module, test_data: ArrayDataset, targets: np.ndarray) -> float:
    # In batches: a ResNet-18 on a whole CIFAR test split at once would need gigabytes of
    # activations. Eval-mode BatchNorm makes each prediction independent of its batch.
    images = to_model_space(test_data.images)
    with torch.no_grad():
        pred = torch.cat([net(images[i:i + PREDICT_BATCH]).argmax(dim=1)
                          for i in range(0, len(images), PREDICT_BATCH)]).numpy()
    return float(np.mean(pred == targets))


def _cnn_problem(train_data: ArrayDataset, labels) -> tuple[torch.Tensor, int]:
    """(images (N, C, H, W) in [-1, 1], number of classes the network outputs: 2 for PU)."""
    check_inputs(train_data, labels)
    k = 2 if labels.kind == "pu" else labels.num_classes
    return to_model_space(train_data.images), k


def cnn_ce(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """Cross-entropy on the naive training set (see `baseline_common`)."""
    images, k = _cnn_problem(train_data, labels)
    rows, y = naive_training_set(labels, baseline_rng(seed))
    rows_t, y_t = torch.from_numpy(np.array(rows)), torch.from_numpy(np.array(y))
    t0 = time.perf_counter()
    net = train_conv_net(images[rows_t], k, lambda logits, idx: F.cross_entropy(logits, y_t[idx]),
                         seed=seed, epochs=CNN_EPOCHS)
    seconds = time.perf_counter() - t0
    return {"accuracy": _cnn_accuracy(net, test_data, label_space_targets(labels, test_data)),
            "train_seconds": seconds}


def _transition_for(labels, x: np.ndarray, seed: int) -> np.ndarray:
    """An anchor-point estimate of T from a logistic regression fitted on the noisy labels
    (Patrini et al. 2017). A T stored in the label file (the true one, for synthetic corruption)
    is never used: no real label file has it."""
    est = fit_estimator(make_estimator("logreg", seed=seed), x, labels.observed)
    return estimate_transition_anchor(class_scores(est, x, labels.num_classes).clip(0, 1))


def cnn_forward(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """Forward-corrected cross-entropy (Patrini et al. 2017): -log (softmax(f(x))^T T)_z, with
    T[i, j] = P(z = j | y = i) estimated from the noisy labels (`_transition_for`)."""
    if labels.kind not in ("clean", "noisy"):
        raise ValueError(f"forward correction needs clean or noisy labels, got {labels.kind!r}")
    images, k = _cnn_problem(train_data, labels)
    t = torch.from_numpy(np.array(_transition_for(labels, flat_features(train_data), seed), dtype=np.float32))
    z = torch.from_numpy(np.array(labels.observed, dtype=np.int64))

    def loss_fn(logits, idx):
        noisy_probs = torch.softmax(logits, dim=1) @ t  # (B, K) p(z | x) = sum_y p(y | x) T[y, z]
        return -noisy_probs.gather(1, z[idx, None]).clamp_min(1e-12).log().mean()

    t0 = time.perf_counter()
    net = train_conv_net(images, k, loss_fn, seed=seed, epochs=CNN_EPOCHS)
    seconds = time.perf_counter() - t0
    return {"accuracy": _cnn_accuracy(net, test_data, label_space_targets(labels, test_data)),
            "train_seconds": seconds}


ELR_LAMBDA = 3.0
ELR_BETA = 0.7


def cnn_elr(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """Early-learning regularisation (Liu et al. 2020): CE(z) + lambda log(1 - <p, t>), t a running
    average (beta 0.7) of each sample's past predictions; lambda 3 (their CIFAR-10 value)."""
    if labels.kind not in ("clean", "noisy"):
        raise ValueError(f"ELR needs clean or noisy labels, got {labels.kind!r}")
    images, k = _cnn_problem(train_data, labels)
    z = torch.from_numpy(np.array(labels.observed, dtype=np.int64))
    running = torch.zeros(len(z), k)  # (N, K) temporal ensemble of predictions

    def loss_fn(logits, idx):
        p = torch.softmax(logits, dim=1).clamp(1e-4, 1 - 1e-4)
        with torch.no_grad():
            q = p.detach() / p.detach().sum(1, keepdim=True)
            running[idx] = ELR_BETA * running[idx] + (1 - ELR_BETA) * q
        reg = torch.log(1 - (p * running[idx]).sum(1)).mean()
        return F.cross_entropy(logits, z[idx]) + ELR_LAMBDA * reg

    t0 = time.perf_counter()
    net = train_conv_net(images, k, loss_fn, seed=seed, epochs=CNN_EPOCHS)
    seconds = time.perf_counter() - t0
    return {"accuracy": _cnn_accuracy(net, test_data, label_space_targets(labels, test_data)),
            "train_seconds": seconds}


def cnn_proden(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """PRODEN (Lv et al. 2020): CE against per-sample weights over the candidate set, which start
    uniform and are replaced after every batch by the model's own probabilities restricted to the
    candidates and renormalised."""
    if labels.kind != "partial":
        raise ValueError(f"PRODEN needs partial labels, got {labels.kind!r}")
    images, k = _cnn_problem(train_data, labels)
    mask = torch.from_numpy(np.array(labels.matrix > 0)).float()  # (N, K)
    weights = mask / mask.sum(1, keepdim=True)

    def loss_fn(logits, idx):
        log_p = torch.log_softmax(logits, dim=1)
        loss = -(weights[idx] * log_p).sum(1).mean()
        with torch.no_grad():
            w = log_p.detach().exp() * mask[idx]
            weights[idx] = w / w.sum(1, keepdim=True).clamp_min(1e-12)
        return loss

    t0 = time.perf_counter()
    net = train_conv_net(images, k, loss_fn, seed=seed, epochs=CNN_EPOCHS)
    seconds = time.perf_counter() - t0
    out = {"accuracy": _cnn_accuracy(net, test_data, label_space_targets(labels, test_data)),
           "train_seconds": seconds}
    if labels.true_labels is not None:
        out["train_label_accuracy"] = float((weights.argmax(1).numpy() == labels.true_labels).mean())
    return out


def cnn_nnpu(train_data: ArrayDataset, labels, test_data: ArrayDataset, *, seed: int) -> dict:
    """Non-negative PU risk (Kiryo et al. 2017) on the network's log-softmax, with the share of
    positives estimated from the images (`training.pu_prior.estimate_pu_prior`, the estimator the
    diffusion model uses; the share a synthetic label file stores is never read). The risk is
    `training.losses.nnpu_loss`, the one DMIS's PU classification term uses: its negative part
    averages over every image of the batch, a sample of all images."""
    if labels.kind != "pu":
        raise ValueError(f"the nnPU risk needs positive-unlabelled labels, got {labels.kind!r}")
    images, k = _cnn_problem(train_data, labels)
    labelled = np.asarray(labels.observed) == 1
    t0 = time.perf_counter()
    prior = float(estimate_pu_prior(flat_features(train_data), labelled, seed=seed)[1])
    is_labelled = torch.from_numpy(labelled)

    def loss_fn(logits, idx):
        return nnpu_loss(torch.log_softmax(logits, dim=1), is_labelled[idx], prior)

    net = train_conv_net(images, k, loss_fn, seed=seed, epochs=CNN_EPOCHS)
    seconds = time.perf_counter() - t0
    return {"accuracy": _cnn_accuracy(net, test_data, label_space_targets(labels, test_data)),
            "train_seconds": seconds, "pu_prior": prior}
