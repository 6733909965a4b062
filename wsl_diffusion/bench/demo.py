"""The demo: one short end-to-end run — corrupt, train DMIS and vanilla, compare with an SVC.

For noisy labels it also runs the README's noisy-label recipe, a second DMIS stage on the labels
the first one agrees with (`dmis-refine`, as `wsl-diff refine`), unless told not to.

Its report is the benchmark's table for a single setting and seed (`report.method_table`), under
a header that says which labels were used.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from label_models.corruption import CorruptionSpec, corrupt

from wsl_diffusion.bench import baselines
from wsl_diffusion.bench.report import REPORT_NAME, aggregate, method_table, samples_link
from wsl_diffusion.bench.runner import run_diffusion_cell, run_refine_cell
from wsl_diffusion.bench.settings import REFINE_METHOD, describe_spec, method_budget
from wsl_diffusion.data.datasets import ArrayDataset, flat_features
from wsl_diffusion.data.sources import load_dataset
from wsl_diffusion.run import atomic_write_text

DEMO_METHODS = ("dmis", "vanilla")
DEMO_BASELINE = "svc"


def demo_pictures(out: Path, test_data, labels, methods=DEMO_METHODS) -> list[str]:
    """Write and link the demo's pictures: the training curves of each of `methods` (the diffusion
    runs this demo trained), the confusion matrix on the test split of the last DMIS classifier
    (the second stage's when it ran) and, for noisy labels, the T that the first stage estimated
    beside the true one."""
    from wsl_diffusion.classifier import DiffusionClassifier
    from wsl_diffusion.data.datasets import targets_in_label_space
    from wsl_diffusion.eval.plots import confusion_matrix, transition_heatmaps
    from wsl_diffusion.run import CHECKPOINT_NAME, CURVES_NAME, load_checkpoint

    lines = []
    for method in methods:
        if (out / method / CURVES_NAME).is_file():
            lines += [f"Training of {method}:", "", f"![{method} curves]({method}/{CURVES_NAME})", ""]
    last = REFINE_METHOD if REFINE_METHOD in methods else "dmis"
    clf = DiffusionClassifier.from_run(out / last)
    truth = targets_in_label_space(labels, test_data.targets)
    confusion_matrix(truth, clf.predict(test_data.images), out / "confusion.png", class_names=clf.class_names,
                     title=f"{last} on the test split")
    lines += [f"Confusion matrix of the {last} classifier (rows: true class):", "", "![confusion](confusion.png)", ""]
    t = load_checkpoint(out / "dmis" / CHECKPOINT_NAME).get("transition")
    if labels.kind == "noisy" and t is not None and t.numel():
        transition_heatmaps(t.double().numpy(), labels.transition_matrix, out / "transition.png",
                            title="T estimated by DMIS (never reads the true one)")
        lines += ["Estimated against true noise (T[i, j] = P(label j | true i)):", "", "![T](transition.png)", ""]
    return lines


def run_demo(out: str | Path, *, spec: CorruptionSpec, kimg: float = 128.0, model: str = "small", seed: int = 0,
             dataset: str = "digits", data: tuple[ArrayDataset, ArrayDataset] | None = None,
             diffusion_overrides: dict | None = None, refine: bool = True, progress: bool = True,
             console=None) -> dict:
    """Corrupt the training labels, train DMIS and vanilla (and, for noisy labels with `refine`, a
    second DMIS stage), classify the test split with each, run an SVC on pixels, and write
    OUT/report.md.

    -> {"rows": [{"method", "accuracy", "train_seconds", "budget", "nfe_per_image"}, ...],
        "samples": path of the DMIS sample grid or None, "seconds": total wall time,
        "supervision": spec as a dict, "report": path of report.md}.
    Run directories: OUT/dmis, OUT/dmis-refine and OUT/vanilla (continued if they hold a checkpoint).
    """
    if not (math.isfinite(kimg) and kimg > 0):
        raise ValueError(f"`kimg` must be a positive number, got {kimg}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out` {out} exists and is not a directory")
    t_start = time.perf_counter()
    train_data, test_data = data if data is not None else load_dataset(dataset)
    labels = corrupt(train_data.targets, num_classes=train_data.num_classes, spec=spec,
                     features=flat_features(train_data), dataset_name=dataset)
    rows, records = [], []
    methods = list(DEMO_METHODS)
    if refine and labels.kind == "noisy":
        methods.insert(methods.index("dmis") + 1, REFINE_METHOD)
    for method in methods:
        if console is not None and progress:
            what = "a second stage on the labels DMIS agrees with, " if method == REFINE_METHOD else "training "
            console.print(f"[bold]{method}[/bold]: {what}{kimg:g} kimg ({model}) -> {out / method}")
        common = dict(spec=spec, labels=labels, train_data=train_data, test_data=test_data, run_dir=out / method,
                      dataset=dataset, model=model, kimg=kimg, seed=seed, overrides=diffusion_overrides)
        if method == REFINE_METHOD:
            res = run_refine_cell(stage1=out / "dmis", **common, progress=progress, console=console)
        else:
            res = run_diffusion_cell(method, **common, progress=progress, console=console)
        rows.append({"method": method, "accuracy": res["accuracy"], "train_seconds": res["train_seconds"],
                     "budget": method_budget(method, kimg=kimg, model=model), "nfe_per_image": res["nfe_per_image"]})
        records.append({**rows[-1], "run_dir": method})
    svc = baselines.REGISTRY[DEMO_BASELINE]
    res = svc.run(train_data, labels, test_data, seed=seed)
    rows.append({"method": svc.name, "accuracy": res["accuracy"], "train_seconds": res["train_seconds"],
                 "budget": svc.budget, "nfe_per_image": None})
    records.append(rows[-1])
    samples = out / "dmis" / "samples.png"
    total = time.perf_counter() - t_start
    result = {"rows": rows, "samples": str(samples) if samples.is_file() else None, "seconds": total,
              "supervision": spec.to_dict()}

    (row,) = aggregate({**r, "setting": "demo", "seed": seed} for r in records).values()
    lines = [f"# wsl-diff demo: {dataset}", "",
             f"Labels: {describe_spec(spec)} (corruption seed {spec.seed}); "
             f"{len(train_data)} training and {len(test_data)} test images; training seed {seed}. "
             "Test accuracy (%), the best in **bold**; NFE/img: network evaluations per test image of "
             "the diffusion classifier.", "",
             *method_table(row), ""]
    grid = samples_link(out, row)
    if grid:
        lines += [f"Samples of the diffusion model (one row per class): [{grid}]({grid})", ""]
    lines += demo_pictures(out, test_data, labels, methods)
    lines += [f"Total wall time: {total:.0f} s.", ""]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / REPORT_NAME, "\n".join(lines))
    result["report"] = str(out / REPORT_NAME)
    return result
