"""Quality of a run's class-conditional samples (design §6): FD, density/coverage, class-wise
versions, Classification Accuracy Score and the evaluator's accuracy on the samples.

    from wsl_diffusion.run import load_model
    from wsl_diffusion.eval.sample_quality import evaluate_samples
    net, ckpt, config = load_model("runs/noisy")
    result = evaluate_samples(net, config, labels=load_labels("runs/noisy/labels.npz"))

Feature space: the evaluator (`wsl_diffusion.eval.feature_net`), a small conv net trained once on the
clean training split of the run's dataset. The real reference set is that clean training split
with its true labels, mapped into the run's class space (identity, except positive-unlabelled
runs, whose classes are negative/positive).

- FD / density / coverage: all samples vs all reference images.
- CW-FD / CW-density / CW-coverage: per class c, the samples conditioned on c vs the reference
  images of class c, averaged over classes. FD values always come with their sample sizes.
- CAS (Ravuri & Vinyals 2019): a fresh classifier (the evaluator's recipe) trained on the samples
  with their conditioning labels, accuracy on the real test split.
- sample accuracy: the evaluator's prediction on each sample vs the class it was conditioned on.
- real_test_fd: FD between the reference set and the real test split — what real images score
  at that sample size, a floor to read the other FDs against.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from wsl_diffusion.data.datasets import ArrayDataset, targets_in_label_space, to_model_space
from wsl_diffusion.data.sources import load_dataset
from wsl_diffusion.eval.feature_net import ClassifierConfig, Evaluator, accuracy, get_evaluator, train_classifier
from wsl_diffusion.eval.sample_metrics import DEFAULT_K, frechet_distance, sample_metrics
from wsl_diffusion.sampling import sample_per_class


def label_space_targets(true_labels: np.ndarray, num_classes: int, labels=None) -> np.ndarray:
    """Dataset classes -> the run's class space: identity when the class counts agree, the
    positive-unlabelled mapping when `labels` (the run's ImpreciseLabels) is a PU label set."""
    if labels is not None:
        return targets_in_label_space(labels, true_labels)
    if int(np.max(true_labels)) >= num_classes:
        raise ValueError(f"the model has {num_classes} classes but the dataset has more; pass the run's labels "
                         "(labels.npz) so dataset classes can be mapped into the model's class space")
    return np.asarray(true_labels, dtype=np.int64)


def classification_accuracy_score(images: torch.Tensor, labels, test: ArrayDataset, test_targets: np.ndarray, *,
                                  num_classes: int, config: ClassifierConfig = ClassifierConfig(),
                                  device="cpu") -> float:
    """CAS: train a fresh classifier on (images (N, C, H, W) in [-1, 1], labels (N,)), return its
    accuracy on the real test split (`test_targets` in the same class space as `labels`)."""
    net = train_classifier(images, labels, num_classes=num_classes, config=config, device=device)
    return accuracy(net, to_model_space(test.images), test_targets)


def evaluate_samples(net, config, *, labels=None, per_class: int = 100, seed: int = 0, guidance: float = 0.0,
                     num_steps: int = 18, solver: str = "heun", k: int = DEFAULT_K,
                     evaluator: Evaluator | None = None, classifier: ClassifierConfig = ClassifierConfig(),
                     cache_dir=None, device="cpu", batch_size: int = 256,
                     samples: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Generate `per_class` samples per class and measure them (see the module docstring).

    net: a class-conditional denoiser (EMA weights); config: the run's TrainConfig (its dataset,
    subset and test split are used); labels: the run's ImpreciseLabels (needed for PU runs).
    evaluator: default `get_evaluator(config.dataset)` (trained and cached on first use);
    classifier: the recipe of the CAS classifier. samples: (images, labels) to measure instead of
    drawing new ones. Returns a JSON-serialisable dict; FD entries carry `*_n_real` / `*_n_fake`.
    """
    if per_class < 1:
        raise ValueError(f"--per-class must be >= 1; got {per_class}")
    k_model = net.num_classes
    reference, full_test = load_dataset(config.dataset, on_error=config.on_bad_image)  # full clean splits
    if evaluator is None:
        evaluator = get_evaluator(config.dataset, config=classifier, cache_dir=cache_dir, device=device,
                                  splits=(reference, full_test))
    test = full_test if config.subset is None else load_dataset(
        config.dataset, subset=config.subset, on_error=config.on_bad_image)[1]  # the run's test split
    ref_targets = label_space_targets(reference.targets, k_model, labels)
    test_targets = label_space_targets(test.targets, k_model, labels)

    t0 = time.perf_counter()
    if samples is None:
        images, cond = sample_per_class(net, per_class=per_class, seed=seed, guidance=guidance, num_steps=num_steps,
                                        solver=solver, device=device, batch_size=batch_size)
    else:
        images, cond = samples
    sample_seconds = time.perf_counter() - t0
    cond_np = np.asarray(cond, dtype=np.int64)
    if samples is not None:  # report what was measured, not the argument
        per_class = int(np.bincount(cond_np).max()) if len(cond_np) else 0

    real_feats = evaluator.features(to_model_space(reference.images))
    fake_feats = evaluator.features(images)
    metrics = sample_metrics(real_feats, ref_targets, fake_feats, cond_np, k=k)
    floor = frechet_distance(real_feats, evaluator.features(to_model_space(test.images)))

    pred = label_space_targets(evaluator.predict(images).numpy(), k_model, labels)
    correct = pred == cond_np
    t1 = time.perf_counter()
    cas = classification_accuracy_score(images, cond_np, test, test_targets, num_classes=k_model,
                                        config=classifier, device=device)
    cas_seconds = time.perf_counter() - t1
    return {
        "num_samples": int(len(images)), "per_class": per_class, "seed": seed, "guidance": guidance,
        "num_steps": num_steps, "solver": solver, "sample_seconds": sample_seconds,
        **metrics,
        "real_test_fd": floor.distance, "real_test_fd_n_real": floor.n_real, "real_test_fd_n_fake": floor.n_fake,
        "cas": cas, "cas_n_train": int(len(images)), "cas_n_test": int(len(test)), "cas_seconds": cas_seconds,
        "sample_accuracy": float(correct.mean()),
        "sample_accuracy_per_class": [float(correct[cond_np == c].mean()) if np.any(cond_np == c) else None
                                      for c in range(k_model)],
        "evaluator": {"dataset": evaluator.dataset, "test_accuracy": evaluator.test_accuracy,
                      "feature_dim": evaluator.feature_dim, "train_seconds": evaluator.train_seconds,
                      "path": str(evaluator.path) if evaluator.path else None},
    }


def summary_lines(result: dict) -> list[str]:
    """Human-readable lines of an `evaluate_samples` result (FD always with its n)."""
    n_cw = result["n_fake_per_class"]
    n_cw_text = str(n_cw[0]) if len(set(n_cw)) == 1 else f"{min(n_cw)}-{max(n_cw)}"
    ev = result["evaluator"]
    return [
        f"samples: {result['num_samples']} ({result['per_class']}/class, {result['solver']} {result['num_steps']} steps, "
        f"guidance {result['guidance']:g}, seed {result['seed']}, {result['sample_seconds']:.1f} s)",
        f"evaluator: {ev['feature_dim']}-d features, clean test accuracy {100 * ev['test_accuracy']:.2f}%",
        f"FD        {result['fd']:.4g}  (n_fake={result['fd_n_fake']}, n_real={result['fd_n_real']}; "
        f"real test split: {result['real_test_fd']:.4g} at n={result['real_test_fd_n_fake']})",
        f"CW-FD     {result['cw_fd']:.4g}  (n_fake={n_cw_text}/class, {len(result['classes'])} classes)",
        f"density   {result['density']:.3f}   coverage {result['coverage']:.3f}   (k={result['k']})",
        f"CW-density {result['cw_density']:.3f}  CW-coverage {result['cw_coverage']:.3f}",
        f"CAS       {100 * result['cas']:.2f}%  (trained on {result['cas_n_train']} samples, "
        f"tested on {result['cas_n_test']} real)",
        f"sample accuracy {100 * result['sample_accuracy']:.2f}%  (evaluator vs conditioning class)",
    ]
