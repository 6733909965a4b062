"""A second stage for noisy labels (`wsl-diff refine`): train again on the labels the first model agrees with.

Stage 1 is a finished noisy-label DMIS run. Its classifier (the inference posterior, no label
read) names a class for every training image; a row keeps its observed label z where that class
is z and becomes unlabelled otherwise (`label_models.agreement`). Stage 2 trains a new DMIS
model, from fresh weights, on these semi-supervised labels, with stage 1's settings.

Why it helps (digits sym-40, benchmarks/results/digits-256kimg/agreement_probe.md): stage 1's
own E-step keeps z on about as many rows, but only 94-95% of them right, because its table
multiplies the model's posterior by p(z | y), which pulls a doubtful row towards its label. The
model alone, asked without the label, agrees with z on 60% of the rows and is right on 99% of
those. Stage 2 then trains on nearly clean labels and no T.

Stage 2's labels pin stage 1's validation rows and carry its noisy labels and T, so the two
stages' models are scored on the same rows against the same noisy labels, row by row
(`eval.validation.validation_split`, `scoring_labels`), and a rule can choose between them
without the test split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from label_models.agreement import STAGE_KEY, agreement_labels
from label_models.io import save_labels
from label_models.labels import ImpreciseLabels
from wsl_diffusion.classifier import DiffusionClassifier
from wsl_diffusion.config import TrainConfig, default_table_unmix, default_topk
from wsl_diffusion.eval.validation import label_rows, validation_split
from wsl_diffusion.run import CHECKPOINT_NAME, TrainedRun, load_checkpoint

REFINE_LABELS_NAME = "refine_labels.npz"  # stage 2's label file, in its run directory


def stage_one_problem(run: TrainedRun) -> str | None:
    """Why a loaded run (`run.load_run`) cannot be refined, in one line; None when it can."""
    if run.labels.kind != "noisy":
        return f"{run.run_dir} was trained on {run.labels.kind} labels; refine is for noisy labels"
    if run.config.method != "dmis":
        return f"{run.run_dir} was trained with --method {run.config.method}; refine follows a DMIS run"
    if STAGE_KEY in run.labels.meta:
        return f"{run.run_dir} is itself a second stage; refine its first stage instead"
    return None


def refine_config(stage1: TrainConfig, labels_file: Path, *, total_kimg: float | None = None) -> TrainConfig:
    """Stage 2's config: stage 1's, on the semi-supervised label file, with the semi-supervised
    kind's defaults where they differ from the noisy kind's (topk, table unmixing), the same seed,
    validation share and (by default) length. Fields that act on noisy labels only (T, ELR, ...)
    are carried unchanged and do nothing."""
    return stage1.replace(labels_file=str(Path(labels_file).resolve()), supervision=None,
                          topk=default_topk("semi"), table_unmix=default_table_unmix("semi"),
                          total_kimg=stage1.total_kimg if total_kimg is None else total_kimg)


def refine_labels(run: TrainedRun, *, device="cpu", images: np.ndarray | None = None,
                  min_confidence: float = 0.0) -> tuple[ImpreciseLabels, dict]:
    """(stage 2's label file, a report) from a finished stage-1 run (`run.load_run`'s result): its
    classifier (inference posterior, every class scored, no label read) classifies the training
    rows the run trained on, and `agreement_labels` keeps the labels it agrees with (and, with
    `min_confidence` > 0, gives at least that probability). ValueError, in one line, for a run
    that cannot be refined (`stage_one_problem`).

    images: the training images, one per label row, for a run trained on in-memory data (the
    estimator's); None reads them from the run's dataset (`TrainedRun.splits`).

    The report is label-free (rows, kept share) apart from what a synthetic label file's truth
    says (kept_right, wrong_kept_share, observed_right: diagnostics, read by nothing)."""
    problem = stage_one_problem(run)
    if problem:
        raise ValueError(problem)
    run_dir = Path(run.run_dir)
    if images is None:
        images = run.splits()[0].images
    elif len(images) != run.labels.num_samples:
        raise ValueError(f"{len(images)} images for the {run.labels.num_samples} label rows of {run_dir}; "
                         "pass the images the run trained on")
    n = len(images)
    validation = validation_split(run.config, run.labels, n).numpy()
    fit = np.flatnonzero(label_rows(n, torch.as_tensor(validation)).numpy())
    z = np.asarray(run.labels.observed)
    model_class = np.full(n, -1, dtype=np.int64)
    label_probability = np.zeros(n)
    proba = DiffusionClassifier.from_run(run_dir, device=device).predict_proba(images[fit])
    model_class[fit] = proba.argmax(1)
    label_probability[fit] = proba[np.arange(len(fit)), z[fit]]
    t = load_checkpoint(run_dir / CHECKPOINT_NAME).get("transition")
    labels = agreement_labels(run.labels, model_class, validation,
                              transition=None if t is None or not t.numel() else t.double().numpy(),
                              source=str(run_dir.resolve()), label_probability=label_probability,
                              min_confidence=min_confidence)
    kept = np.asarray(labels.is_labelled, dtype=bool)
    # classes with training rows but no kept label: stage 2 has no labelled image to learn them from
    empty = sorted(set(z[fit].tolist()) - set(z[kept].tolist()))
    lost = sorted(set(z[fit][model_class[fit] == z[fit]].tolist()) & set(empty))  # emptied by min_confidence
    if lost:
        raise ValueError(f"stage 2 would keep no label of class {', '.join(map(str, lost))}: stage 1's classifier "
                         f"names those labels, but never with probability >= {min_confidence:g}; lower "
                         f"--min-confidence")
    report = {"run_dir": str(run_dir), "rows": len(fit), "validation_rows": len(validation),
              "kept_share": float(kept[fit].mean()), "classes_without_labels": empty}
    if run.labels.true_labels is not None:  # diagnostics: the truth is read only to report
        truth = np.asarray(run.labels.true_labels)
        report["kept_right"] = float((z[kept] == truth[kept]).mean()) if kept.any() else None
        report["wrong_kept_share"] = float((kept & (z != truth))[fit].mean())
        report["observed_right"] = float((z == truth)[fit].mean())
    return labels, report


def write_stage_two(run: TrainedRun, out: Path, *, total_kimg: float | None = None, images: np.ndarray | None = None,
                    device="cpu", min_confidence: float = 0.0) -> tuple[ImpreciseLabels, TrainConfig, dict]:
    """(labels, config, report) of stage 2 in `out`: `refine_labels` of a finished stage-1 run,
    saved as OUT/refine_labels.npz, and `refine_config` of the run's config pointing at that file.
    What `wsl-diff refine`, the benchmark's two-stage cell and `DMISClassifier(refine=True)` train on."""
    labels, report = refine_labels(run, device=device, images=images, min_confidence=min_confidence)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_labels(out / REFINE_LABELS_NAME, labels)
    return labels, refine_config(run.config, out / REFINE_LABELS_NAME, total_kimg=total_kimg), report
