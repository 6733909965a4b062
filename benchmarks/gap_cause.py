"""Why does DMIS trail an SVC at symmetric / instance noise? A diagnostic that reads the truth.

    python benchmarks/gap_cause.py --bench runs/bench256 [--settings sym-40,instance-40]

For every finished DMIS run under BENCH/runs/<setting>/dmis/seed<k> (from `wsl-diff benchmark
--preset digits`), it splits the gap between DMIS and the SVC into the labels DMIS ends with and
the classifier it builds from them:

  * labels / E-step table / model on train: the share of training images whose observed label,
    whose final E-step label (argmax of f(y | x) p(z | y), what the generator trains on) and
    whose unrestricted model posterior argmax f(y | x) is the true class;
  * absorbed: of the training images whose E-step label is wrong, the share where the model's own
    posterior agrees with that wrong label (the class model has learned the image as its label's);
    "moves next", the share where it names the true class (the label moves at a later E-step only
    if that margin outweighs p(z | y));
  * SVC on observed / on the E-step table / on the true labels: the benchmark's pixel SVC (sklearn
    defaults) trained on each label set, scored on the test split. "SVC on the table" minus "SVC on
    the truth" is what the table's residual errors cost a classifier that is robust to symmetric
    noise; "DMIS" minus "SVC on the table" is what the diffusion classifier does with those labels
    compared with the SVC (on clean labels DMIS leads the SVC by 0.67 points);
  * DMIS on table (with --retrain DIR): DMIS trained from scratch on the final E-step labels as
    clean labels, at the benchmark's budget. The script writes DIR/<setting>/seed<k>/labels.npz
    and prints the `wsl-diff train` command for each missing run; a second call reads their
    results. Against "DMIS test" it separates the labels DMIS ends with from the path EM took
    to them (a generator trained on the early, worse tables).

With --heldout DIR (runs of `wsl-diff train ... --validation 0.2` under DIR/<setting>/default/seed<k>)
it prints a second table: the same E-step (argmax of f(y | x) p(z | y) with the run's final T)
and the model alone (argmax f), scored against the truth on the rows the run trained on and on
its validation rows, which it never trained on. The E-step is Bayes' rule only if f has not seen
z: on rows it trained on, f already carries their labels' evidence, and p(z | y) counts it twice.

A PU setting (`--settings pu-even`) gets its own table: the share of positives the run used
against the true one, the true-class rates on the unlabelled training images of its model
and of its E-step (and the share that E-step calls positive against the true share), its test
accuracy, and the pixel SVC and (with --retrain DIR, trained in this process under DIR/pu/) DMIS
trained on the true binary labels: what each classifier makes of the binary task with clean
labels, the bound the PU cell is measured against.

Every number here reads the true training or test labels: it explains a loss, it chooses nothing.
Prints a markdown table (mean ± std over seeds) and writes it to BENCH/gap_cause.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dmis_ablation import fmt
from label_models.io import load_labels, save_labels
from label_models.labels import ImpreciseLabels
from wsl_diffusion.bench.baselines_sklearn import fit_estimator, make_estimator
from wsl_diffusion.config import TrainConfig, kind_defaults
from wsl_diffusion.data.datasets import ArrayDataset, flat_features, targets_in_label_space
from wsl_diffusion.eval.label_issues import find_label_issues
from wsl_diffusion.eval.validation import validation_split
from wsl_diffusion.run import (CHECKPOINT_NAME, aligned_splits, checkpoint_config, load_checkpoint, load_config,
                               run_label_likelihood)
from wsl_diffusion.training.loop import train as train_model

COLUMNS = ["labels", "E-step table", "model on train", "absorbed", "moves next", "DMIS test",
           "SVC on observed", "SVC on table", "SVC on truth"]


def svc_accuracy(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int) -> float:
    est = fit_estimator(make_estimator("svc", seed=seed), x, y)
    return float((est.predict(x_test) == y_test).mean() * 100)


def retrain_on_table(run_dir: Path, out: Path, table_label: np.ndarray, truth: np.ndarray, num_classes: int,
                     seed: int) -> float:
    """The test accuracy of DMIS trained on the table's labels as clean ones (NaN until that run
    exists; then the command to make it is printed)."""
    out.mkdir(parents=True, exist_ok=True)
    labels_path = out / "labels.npz"
    if not labels_path.is_file():
        one_hot = np.eye(num_classes, dtype=np.float32)[table_label]
        save_labels(labels_path, ImpreciseLabels(one_hot, kind="clean", true_labels=truth))
    summary = out / "run" / "summary.json"
    if summary.is_file():
        return float(json.loads(summary.read_text())["test_accuracy_ema"]) * 100
    config = load_config(run_dir)
    print(f"wsl-diff train --labels {labels_path} --dataset {config.dataset} --kimg {config.total_kimg:g} "
          f"--model {config.model} --seed {seed} --samples-per-class 0 --threads 1 --quiet --out {out / 'run'}")
    return float("nan")


def estep_labels(run_dir: Path, num_samples: int) -> np.ndarray:
    """(N,) the final E-step's label of every row: argmax of f(y | x) p(z | y) under the run's T
    (`find_label_issues`; every row of a noisy label set carries an observed label)."""
    issues = find_label_issues(run_dir)
    labels = np.empty(num_samples, dtype=np.int64)
    labels[issues.index] = issues.suggested
    return labels


def diagnose(run_dir: Path, seed: int, retrain: Path | None = None) -> dict[str, float]:
    labels = load_labels(run_dir / "labels.npz")
    train, test = aligned_splits(load_config(run_dir), labels)
    truth = labels.true_labels
    table_label = estep_labels(run_dir, labels.num_samples)
    model = load_checkpoint(run_dir / CHECKPOINT_NAME)["table"].double().numpy().argmax(1)
    wrong = table_label != truth
    x, x_test = flat_features(train), flat_features(test)
    retrained = {} if retrain is None else {
        "DMIS on table": retrain_on_table(run_dir, retrain / run_dir.parent.parent.name / run_dir.name, table_label,
                                          truth, labels.num_classes, seed)}
    return {
        "labels": float((labels.observed == truth).mean() * 100),
        "E-step table": float((~wrong).mean() * 100),
        "model on train": float((model == truth).mean() * 100),
        "absorbed": float((model[wrong] == table_label[wrong]).mean() * 100) if wrong.any() else 0.0,
        "moves next": float((model[wrong] == truth[wrong]).mean() * 100) if wrong.any() else 0.0,
        "DMIS test": float(json.loads((run_dir / "summary.json").read_text())["test_accuracy_ema"]) * 100,
        "SVC on observed": svc_accuracy(x, labels.observed, x_test, test.targets, seed),
        "SVC on table": svc_accuracy(x, table_label, x_test, test.targets, seed),
        "SVC on truth": svc_accuracy(x, truth, x_test, test.targets, seed),
        **retrained,
    }


PU_COLUMNS = ["prior used", "true prior", "unlabelled: model", "unlabelled: E-step", "unlabelled: E-step positive",
              "unlabelled: positive", "DMIS test", "SVC on truth", "DMIS on truth"]


def diagnose_pu(run_dir: Path, seed: int, retrain: Path | None = None) -> dict[str, float]:
    """A PU run against the binary task it stands for: the share of positives it used and the
    true one (x 100), the true-class rate of its model's argmax on the unlabelled training
    images, its test accuracy, and the pixel SVC and (with `retrain`) DMIS trained on the true
    binary labels, which bound what either classifier makes of even-against-odd at all. On the
    unlabelled training images: the true-class rates of the model's argmax (under the prior of
    all images) and of the E-step's (under SCAR, what the generator trains on), and the share
    the E-step calls positive against the true share."""
    labels = load_labels(run_dir / "labels.npz")
    config = load_config(run_dir)
    train, test = aligned_splits(config, labels)
    truth, test_y = labels.true_labels, targets_in_label_space(labels, test.targets)
    ckpt = load_checkpoint(run_dir / CHECKPOINT_NAME)
    prior = ckpt["log_prior"].double().exp().numpy()
    unlabelled = ~labels.is_labelled
    f = ckpt["table"].double().numpy()
    model, estep = f.argmax(1), (f * run_label_likelihood(ckpt, labels, config)).argmax(1)
    out = {"prior used": float(prior[1] / prior.sum() * 100), "true prior": float(truth.mean() * 100),
           "unlabelled: model": float((model[unlabelled] == truth[unlabelled]).mean() * 100),
           "unlabelled: E-step": float((estep[unlabelled] == truth[unlabelled]).mean() * 100),
           "unlabelled: E-step positive": float(estep[unlabelled].mean() * 100),
           "unlabelled: positive": float(truth[unlabelled].mean() * 100),
           "DMIS test": float(json.loads((run_dir / "summary.json").read_text())["test_accuracy_ema"]) * 100,
           "SVC on truth": svc_accuracy(flat_features(train), truth, flat_features(test), test_y, seed)}
    if retrain is not None:
        out["DMIS on truth"] = retrain_on_truth_pu(config, retrain / "pu" / run_dir.name, train, truth, test, test_y, seed)
    return out


def retrain_on_truth_pu(config, out: Path, train, truth: np.ndarray, test, test_y: np.ndarray, seed: int) -> float:
    """DMIS trained on the true binary labels as clean ones, at the PU run's budget and model
    (in this process: the CLI maps test labels to the dataset's own classes)."""
    summary = out / "summary.json"
    if not summary.is_file():
        names = ("negative", "positive")
        clean = ImpreciseLabels(np.eye(2, dtype=np.float32)[truth], kind="clean", true_labels=truth)
        cfg = TrainConfig(dataset=config.dataset, model=config.model, total_kimg=config.total_kimg, seed=seed,
                          samples_per_class=0, supervision={"supervision": "clean"}, **kind_defaults("clean"))
        train_model(cfg, out, train_data=ArrayDataset(train.images, truth, names), labels=clean,
                    test_data=ArrayDataset(test.images, test_y, names), test_targets=test_y, progress=False)
    return float(json.loads(summary.read_text())["test_accuracy_ema"]) * 100


HELDOUT_COLUMNS = ["labels", "E-step", "model"]


def heldout_check(run_dir: Path) -> dict[str, float]:
    """True-class rates of the labels, the final E-step and the model alone, on the rows the run
    trained on ("trained: ...") and on its validation rows ("unseen: ...")."""
    ckpt = load_checkpoint(run_dir / CHECKPOINT_NAME)
    config = checkpoint_config(ckpt, run_dir / CHECKPOINT_NAME)
    labels = load_labels(run_dir / "labels.npz")
    unseen = validation_split(config, labels, labels.num_samples).numpy()
    if len(unseen) == 0:
        raise ValueError(f"{run_dir} has no validation rows; train it with --validation 0.2")
    trained = np.setdiff1d(np.arange(labels.num_samples), unseen)
    f = ckpt["table"].double().numpy()  # the table holds every row's f(y | x), validation rows too
    picks = {"labels": labels.observed, "E-step": estep_labels(run_dir, labels.num_samples), "model": f.argmax(1)}
    return {f"{part}: {name}": float((pick[rows] == labels.true_labels[rows]).mean() * 100)
            for part, rows in (("trained", trained), ("unseen", unseen)) for name, pick in picks.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="a `wsl-diff benchmark --preset digits` output directory")
    ap.add_argument("--settings", default="sym-40,instance-40")
    ap.add_argument("--retrain", type=Path, help="also train DMIS on each run's final table labels here")
    ap.add_argument("--heldout", type=Path, help="runs trained with --validation: DIR/<setting>/default/seed<k>")
    args = ap.parse_args()
    bench = Path(args.bench)
    columns = COLUMNS + (["DMIS on table"] if args.retrain else [])
    lines = ["| setting | seeds | " + " | ".join(f"{c} %" for c in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    pu_lines = []
    for setting in args.settings.split(","):
        rows = []
        is_pu = setting.startswith("pu")
        for d in sorted((bench / "runs" / setting / "dmis").glob("seed*")):
            if (d / "summary.json").is_file():
                rows.append((diagnose_pu if is_pu else diagnose)(d, int(d.name[4:]), args.retrain))
                print(setting, d.name, {k: round(v, 2) for k, v in rows[-1].items()})
        if rows and is_pu:
            pu_columns = PU_COLUMNS if args.retrain else PU_COLUMNS[:-1]
            pu_lines += ["", "| setting | seeds | " + " | ".join(f"{c} %" for c in pu_columns) + " |",
                         "|---|---:|" + "---:|" * len(pu_columns),
                         f"| {setting} | {len(rows)} | " + " | ".join(fmt([r[c] for r in rows], 1) for c in pu_columns) + " |"]
        elif rows:
            lines.append(f"| {setting} | {len(rows)} | " + " | ".join(fmt([r[c] for r in rows], 1) for c in columns) + " |")
    if len(lines) == 2:  # no noisy-label setting: no empty table
        lines = []
    lines += pu_lines[1:] if not lines else pu_lines
    if args.heldout:
        columns = [f"{part}: {name}" for part in ("trained", "unseen") for name in HELDOUT_COLUMNS]
        lines += ["", "| setting | seeds | " + " | ".join(f"{c} %" for c in columns) + " |",
                  "|---|---:|" + "---:|" * len(columns)]
        for setting in args.settings.split(","):
            rows = [heldout_check(d) for d in sorted(args.heldout.glob(f"{setting}/default/seed*"))
                    if (d / "summary.json").is_file()]
            if rows:
                lines.append(f"| {setting} | {len(rows)} | " + " | ".join(fmt([r[c] for r in rows], 1) for c in columns)
                             + " |")
    text = "\n".join(lines)
    print(text)
    (bench / "gap_cause.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
