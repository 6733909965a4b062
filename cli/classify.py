"""`wsl-diff classify RUN_DIR image.png [more.png ...]`: classify images with a trained run.

Any PNG/JPEG is converted to the model's channel count and resized to its size (with a note on
stderr when it is resized). Prints the class, its probability and the network evaluations (NFE)
per image; --json prints one JSON object. An unreadable image is reported on one line and skipped,
the others are still classified, and the exit code is 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from wsl_diffusion.classifier import DiffusionClassifier
from wsl_diffusion.posterior import INFERENCE_DRAWS, SCHEDULES


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("classify", help="classify images with a trained run's diffusion posterior",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory made by `wsl-diff train`")
    p.add_argument("images", nargs="+", help="PNG/JPEG files")
    add_posterior_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=run)
    return p


def add_posterior_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("posterior")
    g.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="noise-level schedule (default: the run's training interval)")
    g.add_argument("--num-sigmas", type=int, default=None)
    g.add_argument("--keep-classes", type=int, default=None, help="adaptive class pruning: classes refined")
    g.add_argument("--temperature", type=float, default=None, help="override the run's fitted temperature")
    g.add_argument("--draws", type=int, default=None,
                   help=f"noise draws per level, their errors averaged (default: {INFERENCE_DRAWS}; "
                        "each draw costs the schedule's evaluations again)")
    g.add_argument("--seed", type=int, default=0, help="noise seed of the posterior")
    g.add_argument("--budget", type=int, default=None,
                   help="at most this many network evaluations per image: the schedule fitted for it on the "
                        "run's training images and labels (ignores --schedule/--num-sigmas/--keep-classes/--draws)")


def posterior_from_args(args, base):
    """The run's posterior config with the command-line overrides applied."""
    changes = {}
    if args.schedule is not None:
        changes["schedule"] = args.schedule
        if args.schedule != "interval":
            changes.update(sigma_lo=None, sigma_hi=None)
    if args.num_sigmas is not None:
        changes["num_sigmas"] = args.num_sigmas
    if args.keep_classes is not None:
        changes.update(keep_classes=args.keep_classes, prune_sigmas=1)
    if args.temperature is not None:
        changes["temperature"] = args.temperature
    if args.draws is not None:
        changes["draws"] = args.draws
    return base.replace(**changes)


def read_image(path: Path, shape: tuple[int, int, int]) -> tuple[np.ndarray, bool]:
    """Load an image file as uint8 (H, W, C) in the model's channel count and size.

    Returns (array, resized). Raises ValueError naming the file if it cannot be decoded.
    """
    c, h, w = shape
    try:
        with Image.open(path) as img:
            img = img.convert("L" if c == 1 else "RGB")
            resized = img.size != (w, h)
            if resized:
                img = img.resize((w, h), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except Image.DecompressionBombError:
        raise ValueError(f"{path}: the image declares more pixels than PIL's safety limit (a decompression bomb?); "
                         "left out") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable image ({type(exc).__name__})") from None
    if c == 1:
        arr = arr[..., None]
    return arr, resized


def run(args: argparse.Namespace) -> int:
    clf = DiffusionClassifier.from_run(args.run_dir, seed=args.seed)
    clf.posterior = posterior_from_args(args, clf.posterior)
    images, names, failed = [], [], 0
    for name in args.images:
        try:
            arr, resized = read_image(Path(name), clf.image_shape)
        except ValueError as exc:
            print(f"wsl-diff classify: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if resized:
            print(f"note: {name} resized to {clf.image_shape[2]}x{clf.image_shape[1]} "
                  f"({clf.image_shape[0]} channel(s)) for the model", file=sys.stderr)
        images.append(arr)
        names.append(name)
    results = []
    if images:
        probs = clf.predict_proba(np.stack(images), budget=args.budget)
        for name, p in zip(names, probs):
            k = int(p.argmax())
            results.append({"image": name, "class": k, "class_name": clf.class_names[k],
                            "probability": float(p[k]), "probabilities": [float(v) for v in p],
                            "nfe": clf.last_nfe_per_image})
    if args.json:
        print(json.dumps({"run_dir": str(args.run_dir), "results": results, "failed": failed}))
    else:
        for r in results:
            top = np.argsort(r["probabilities"])[::-1][:3]
            alts = ", ".join(f"{clf.class_names[i]} {r['probabilities'][i]:.3f}" for i in top)
            print(f"{r['image']}: {r['class_name']} (p={r['probability']:.3f}; top: {alts}; NFE {r['nfe']})")
    return 2 if failed else 0
