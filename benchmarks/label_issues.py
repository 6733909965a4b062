"""Label-issue finding: a DMIS run's own table against cleanlab with out-of-fold SVC probabilities.

    pip install cleanlab          # only this script needs it
    python benchmarks/label_issues.py --bench runs/bench [--settings sym-40,asym-40,instance-40]

For each noisy setting and seed with a finished DMIS run under BENCH/runs/<setting>/dmis/seed<k>
(from `wsl-diff benchmark --preset digits`), it compares two flagged sets on the same corrupted
training labels, against the known true labels (which neither method reads):
  * DMIS: `wsl_diffusion.eval.label_issues.find_label_issues(run)` (the labels the E-step moved);
  * cleanlab: `cleanlab.filter.find_label_issues(labels, pred_probs)` with 5-fold out-of-fold
    `predict_proba` of the benchmark's SVC (Platt-scaled, the best scikit-learn baseline at
    noisy labels) on the pixels.
Prints precision, recall and ROC AUC of the ranking score per method (mean ± std over seeds) as
a markdown table, and writes it to BENCH/label_issues.md.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from label_models.io import load_labels
from wsl_diffusion.bench.baselines_sklearn import fit_estimator, make_estimator
from wsl_diffusion.data.datasets import flat_features
from wsl_diffusion.eval.label_issues import find_label_issues
from wsl_diffusion.run import aligned_splits, load_config


def out_of_fold_svc(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    probs = np.zeros((len(y), num_classes))
    for train, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
        est = fit_estimator(make_estimator("svc", seed=seed, probability=True), x[train], y[train])
        probs[np.ix_(held, est.classes_)] = est.predict_proba(x[held])
    return probs


def scores(flagged: np.ndarray, ranking: np.ndarray, wrong: np.ndarray) -> dict:
    hit = (flagged & wrong).sum()
    return {"precision": hit / max(flagged.sum(), 1), "recall": hit / max(wrong.sum(), 1),
            "auc": roc_auc_score(wrong, ranking), "flagged": int(flagged.sum())}


def compare(run_dir: Path, seed: int) -> dict[str, dict]:
    from cleanlab.filter import find_label_issues as cleanlab_issues

    labels = load_labels(run_dir / "labels.npz")
    train, _ = aligned_splits(load_config(run_dir), labels)
    z, wrong = labels.observed, labels.observed != labels.true_labels

    ours = find_label_issues(run_dir)
    flagged = np.zeros(len(z), bool)
    flagged[ours.index] = ours.flagged
    rank = np.zeros(len(z))
    rank[ours.index] = ours.score

    probs = out_of_fold_svc(flat_features(train), z, labels.num_classes, seed)
    theirs = cleanlab_issues(z, probs)
    self_confidence = 1.0 - probs[np.arange(len(z)), z]  # cleanlab's default ranking quantity
    return {"DMIS (run table)": scores(flagged, rank, wrong), "cleanlab + SVC": scores(theirs, self_confidence, wrong)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="a `wsl-diff benchmark --preset digits` output directory")
    ap.add_argument("--settings", default="sym-40,asym-40,instance-40")
    args = ap.parse_args()
    bench = Path(args.bench)
    lines = ["| setting | method | seeds | precision % | recall % | ROC AUC | flagged |", "|---|---|---:|---:|---:|---:|---:|"]
    for setting in args.settings.split(","):
        per_method: dict[str, list[dict]] = {}
        for run_dir in sorted((bench / "runs" / setting / "dmis").glob("seed*")):
            if not (run_dir / "summary.json").is_file():
                continue
            for method, result in compare(run_dir, int(run_dir.name[4:])).items():
                per_method.setdefault(method, []).append(result)
        for method, results in per_method.items():
            def cell(key, scale=100.0, digits=1):
                vals = [r[key] * scale for r in results]
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                return f"{statistics.mean(vals):.{digits}f} ± {sd:.{digits}f}"
            lines.append(f"| {setting} | {method} | {len(results)} | {cell('precision')} | {cell('recall')} | "
                         f"{cell('auc', 1.0, 3)} | {cell('flagged', 1.0, 0)} |")
    table = "\n".join(lines) + "\n"
    (bench / "label_issues.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
