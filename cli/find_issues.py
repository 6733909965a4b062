"""`wsl-diff find-issues RUN_DIR`: the training labels a DMIS run's model doubts, most doubtful first.

    wsl-diff find-issues runs/sym40                    # -> runs/sym40/label_issues.csv + .png
    wsl-diff find-issues runs/sym40 --top 48 --json

Reads the run's posterior table and label likelihood (no network evaluation): for each labelled
training image, the score 1 - p(observed label is right | image, label) and the label the model
would suggest; an image is flagged when that suggestion differs from its label. Writes a CSV
(index, observed, suggested, score, flagged; sorted by score) and a PNG grid of the --top most
doubtful images, row by row in CSV order.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from wsl_diffusion.data.datasets import to_model_space
from wsl_diffusion.data.images import image_grid, save_png
from wsl_diffusion.eval.label_issues import find_label_issues
from label_models.io import load_labels
from wsl_diffusion.run import LABELS_NAME, aligned_splits, load_config


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("find-issues", help="rank a DMIS run's training labels by how much its model doubts them",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory made by `wsl-diff train` (DMIS)")
    p.add_argument("--csv", default=None, help="where to write the ranking (default RUN_DIR/label_issues.csv)")
    p.add_argument("--picture", default=None, help="PNG of the top suspects (default RUN_DIR/label_issues.png)")
    p.add_argument("--top", type=int, default=32, help="images in the picture and the printed list (default 32)")
    p.add_argument("--json", action="store_true", help="print a summary and the top suspects as JSON")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be >= 1; got {args.top}")
    run_dir = Path(args.run_dir)
    issues = find_label_issues(run_dir)
    csv_path = Path(args.csv) if args.csv else run_dir / "label_issues.csv"
    picture = Path(args.picture) if args.picture else run_dir / "label_issues.png"
    issues.write_csv(csv_path)
    train, _ = aligned_splits(load_config(run_dir), load_labels(run_dir / LABELS_NAME))
    top = issues.index[: args.top]
    rows = max(1, round(len(top) ** 0.5))
    save_png(image_grid(to_model_space(train.images[top]), rows=rows), picture, upscale=4)
    names = issues.class_names
    suspects = [{"index": int(i), "observed": names[z], "suggested": names[s], "score": round(float(sc), 4)}
                for i, z, s, sc in zip(top, issues.observed, issues.suggested, issues.score)]
    if args.json:
        print(json.dumps({"run_dir": str(run_dir), "labelled": len(issues.index), "flagged": int(issues.flagged.sum()),
                          "csv": str(csv_path), "picture": str(picture), "top": suspects}))
    else:
        print(f"{int(issues.flagged.sum())} of {len(issues.index)} labels flagged -> {csv_path}, {picture}")
        for s in suspects[:10]:
            print(f"  #{s['index']}: labelled {s['observed']}, looks like {s['suggested']} (score {s['score']:.3f})")
    return 0
