"""Noisy dataset condensation (design §2, task 3): IPC generated images per class as a dataset.

For each IPC (images per class) the run's EMA model draws IPC images of every class (Heun, fixed
seed), a fresh classifier (`evaluator.ClassifierConfig` recipe) is trained on them alone, and its
accuracy on the real test split is the score. The baseline is what the user could do without the
model: IPC random real training images per class, labelled with the *observed* imprecise labels
(noisy label as given; partial: one candidate drawn at random; unlabelled rows are skipped) —
the same classifier recipe, the same test split.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from label_models.likelihood import pick_candidates

from wsl_diffusion.data.datasets import ArrayDataset, targets_in_label_space, to_model_space
from wsl_diffusion.data.images import image_grid, save_png, save_samples_npz
from wsl_diffusion.eval.feature_net import ClassifierConfig, accuracy, train_classifier
from wsl_diffusion.run import atomic_write_text, load_run
from wsl_diffusion.sampling import sample_per_class

GRID_MAX_PER_CLASS = 10


def observed_hard_labels(labels, rng: np.random.Generator) -> np.ndarray:
    """(N,) one observed class per row, -1 for rows without information.

    A one-hot row gives its class; a candidate set (partial) gives one candidate drawn uniformly
    with `rng`; an all-ones (unlabelled) row gives -1."""
    pick = pick_candidates(labels.matrix, rng.random(labels.num_samples))
    return np.where(labels.is_labelled, pick, -1)


def noisy_real_subset(labels, ipc: int, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices and observed labels of up to `ipc` random training rows per observed class.

    A class observed fewer than `ipc` times contributes all its rows."""
    observed = observed_hard_labels(labels, rng)
    idx = []
    for c in range(labels.num_classes):
        rows = np.flatnonzero(observed == c)
        idx.append(rng.choice(rows, size=min(ipc, len(rows)), replace=False))
    chosen = np.sort(np.concatenate(idx).astype(np.int64))
    return chosen, observed[chosen]


def condensation_scores(net, labels, train: ArrayDataset, test: ArrayDataset, *, ipc: int, seed: int = 0,
                        guidance: float = 0.0, num_steps: int = 18, classifier: ClassifierConfig = ClassifierConfig(),
                        device="cpu", samples: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Real-test accuracy of a classifier trained on IPC generated images per class, and of the
    noisy-real baseline. `samples`: a precomputed (images, labels) synthetic set to score instead.
    Returns a dict; `samples` of the synthetic set are under the key "_samples" (not JSON)."""
    k = net.num_classes
    test_x = to_model_space(test.images)
    test_y = targets_in_label_space(labels, test.targets)

    t0 = time.perf_counter()
    if samples is None:
        samples = sample_per_class(net, per_class=ipc, seed=seed, guidance=guidance, num_steps=num_steps,
                                   solver="heun", device=device)
    sample_seconds = time.perf_counter() - t0
    images, cond = samples
    clf = train_classifier(images, cond, num_classes=k, config=classifier, device=device)
    synthetic_acc = accuracy(clf, test_x, test_y)

    rng = np.random.default_rng([seed, ipc])
    idx, obs = noisy_real_subset(labels, ipc, rng=rng)
    baseline_acc = label_acc = None  # stay None when no row carries a label
    if len(idx):
        base = train_classifier(to_model_space(train.images[idx]), obs, num_classes=k, config=classifier,
                                device=device)
        baseline_acc = accuracy(base, test_x, test_y)
        label_acc = float(np.mean(obs == targets_in_label_space(labels, train.targets[idx])))
    return {
        "ipc": ipc, "synthetic_accuracy": synthetic_acc, "num_synthetic": int(len(images)),
        "baseline_accuracy": baseline_acc, "num_baseline": int(len(idx)),
        "baseline_label_accuracy": label_acc,
        "num_test": int(len(test)), "sample_seconds": sample_seconds,
        "_samples": (images, cond),
    }


def condense_run(run_dir, *, ipcs=(1, 10, 50), out_dir, seed: int = 0, guidance: float = 0.0, num_steps: int = 18,
                 classifier: ClassifierConfig = ClassifierConfig(), device="cpu", on_result=None) -> dict:
    """Condense a trained run at each IPC; write into `out_dir`:

    - results.json — the returned dict (per IPC: synthetic and baseline test accuracy, sizes);
    - condensed_ipc{N}.npz — the synthetic set (uint8 NHWC images, conditioning labels);
    - samples_ipc{N}.png — a grid, one row per class, at most 10 images per class.
    on_result(row) is called after each IPC (progress reporting).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"`out_dir` {out_dir} exists and is not a directory")
    run = load_run(run_dir, device=device)
    net, config, labels = run.net, run.config, run.labels
    train, test = run.splits()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for ipc in ipcs:
        row = condensation_scores(net, labels, train, test, ipc=ipc, seed=seed, guidance=guidance,
                                  num_steps=num_steps, classifier=classifier, device=device)
        images, cond = row.pop("_samples")
        save_samples_npz(out_dir / f"condensed_ipc{ipc}.npz", images, cond, run_dir=str(run_dir), ipc=ipc, seed=seed,
                         solver="heun", num_steps=num_steps, guidance=guidance)
        shown = min(ipc, GRID_MAX_PER_CLASS)
        keep = torch.cat([torch.arange(c * ipc, c * ipc + shown) for c in range(net.num_classes)])
        grid = image_grid(images[keep], rows=net.num_classes)
        save_png(grid, out_dir / f"samples_ipc{ipc}.png", upscale=max(1, 32 // max(images.shape[-2:])))
        rows.append(row)
        if on_result is not None:
            on_result(row)
    result = {"run_dir": str(run_dir), "dataset": config.dataset, "label_kind": labels.kind, "seed": seed,
              "guidance": guidance, "num_steps": num_steps, "solver": "heun", "classifier": classifier.to_dict(),
              "results": rows}
    atomic_write_text(out_dir / "results.json", json.dumps(result, indent=2) + "\n")
    return result
