"""PNG plots for run directories and reports (matplotlib, headless).

    training_curves(RUN/stats.jsonl, RUN/curves.png)        losses and the E-step's table over kimg
    transition_heatmaps(T_estimated, T_true, path)          the estimate beside the truth
    accuracy_bars(rows, path)                                accuracy per setting and method, ± std
    accuracy_vs_nfe(rows, path)                              a posterior's accuracy against its cost

Every function writes one PNG and returns its path; matplotlib is imported inside, so importing
this module costs nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training machine
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def _matrix_axes(fig, ax, image, *, xlabel: str) -> None:
    """Axis labels (rows: the true class) and a colour bar for a class-by-class matrix."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046)


def accuracy_vs_nfe(rows: list[dict], path, *, title: str = "diffusion posterior: accuracy against cost") -> Path:
    """One point per schedule (rows of `evaluate_schedules`): test accuracy against network
    evaluations per image, on a log axis, each point named."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.scatter(r["nfe_per_image"], 100 * r["accuracy"])
        ax.annotate(r["schedule"], (r["nfe_per_image"], 100 * r["accuracy"]), fontsize=8,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations per image")
    ax.set_ylabel("test accuracy %")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def read_stats(stats_path) -> tuple[list[dict], list[dict]]:
    """(step records, refresh records) of a run's stats.jsonl; lines that do not parse are skipped."""
    steps, refreshes = [], []
    for line in Path(stats_path).read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            (refreshes if "refresh" in record else steps).append(record)
    return steps, refreshes


def training_curves(stats_path, path) -> Path:
    """Generative / classification loss against kimg and, for DMIS, what each E-step did: the share
    of labels it moved, the fitted temperature and (diagnostic labels only) the true-class rate."""
    plt = _pyplot()
    steps, refreshes = read_stats(stats_path)
    fig, axes = plt.subplots(1, 2 if refreshes else 1, figsize=(10 if refreshes else 5, 3.5), squeeze=False)
    ax = axes[0, 0]
    for key, name in (("loss_gen", "generative"), ("loss_cls", "classification")):
        points = [(r["kimg"], r[key]) for r in steps if key in r]
        if points:
            ax.plot(*zip(*points), label=name)
    ax.set_xlabel("kimg")
    ax.set_ylabel("loss")
    ax.set_title("training losses")
    if ax.lines:  # a run stopped before its first log line has no curve to name
        ax.legend()
    if refreshes:
        ax = axes[0, 1]
        kimg = [r["kimg"] for r in refreshes]
        ax.plot(kimg, [r["labels_moved"] for r in refreshes], "o-", label="labels moved")
        if all("table_true_class_rate" in r for r in refreshes):
            ax.plot(kimg, [r["table_true_class_rate"] for r in refreshes], "s-", label="true class (diagnostic)")
        ax.set_ylim(0, 1)
        ax.set_xlabel("kimg")
        ax.set_title("E-step: the posterior table")
        ax.legend()
    return _save(fig, path)


def transition_heatmaps(estimated: np.ndarray, true: np.ndarray | None, path, *, title: str = "") -> Path:
    """T[i, j] = P(observed j | true i) as heatmaps: the estimate, the truth and their difference."""
    plt = _pyplot()
    panels = [("estimated T", estimated)]
    if true is not None:
        panels += [("true T", true), ("estimated - true", estimated - true)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for ax, (name, m) in zip(axes[0], panels):
        diff = name.startswith("estimated -")
        image = ax.imshow(m, cmap="RdBu_r" if diff else "viridis", vmin=-0.5 if diff else 0, vmax=0.5 if diff else 1)
        ax.set_title(name)
        _matrix_axes(fig, ax, image, xlabel="observed")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def accuracy_bars(rows: list[tuple[str, str, float, float]], path, *, title: str = "") -> Path:
    """rows: (setting, method, mean %, std %). Grouped bars per setting, one colour per method."""
    plt = _pyplot()
    settings = list(dict.fromkeys(r[0] for r in rows))
    methods = list(dict.fromkeys(r[1] for r in rows))
    cell = {(s, m): (mean, std) for s, m, mean, std in rows}
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(settings)) + 1.5, 3.8))
    for j, method in enumerate(methods):
        xs = [i + (j - (len(methods) - 1) / 2) * width for i, s in enumerate(settings) if (s, method) in cell]
        stats = [cell[(s, method)] for s in settings if (s, method) in cell]
        ax.bar(xs, [m for m, _ in stats], width, yerr=[sd for _, sd in stats], capsize=2, label=method)
    ax.set_xticks(range(len(settings)), settings, rotation=30, ha="right")
    ax.set_ylabel("test accuracy %")
    low = min(m for _, _, m, _ in rows)
    ax.set_ylim(max(0, low - 10), 100)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
    if title:
        ax.set_title(title)
    return _save(fig, path)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, path, *, class_names=None, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted), counts in the cells."""
    plt = _pyplot()
    k = int(max(y_true.max(), y_pred.max())) + 1 if class_names is None else len(class_names)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    rates = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(0.45 * k + 2.5, 0.45 * k + 2))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=90 if k > 12 else 0)
    ax.set_yticks(range(k), names)
    _matrix_axes(fig, ax, image, xlabel="predicted")
    if title:
        ax.set_title(title)
    return _save(fig, path)
