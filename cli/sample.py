"""`wsl-diff sample RUN_DIR --per-class N --out grid.png`: class-conditional samples of a run.

Draws N images of every class from the run's EMA denoiser with the EDM sampler (Heun by default)
and writes a PNG grid with one row per class, plus the samples themselves next to it under the
same name with .npz (`images` uint8 (N, H, W, C), `labels` the conditioning classes, `meta_json`).
Image i of class c always starts from the same noise for a given --seed, whatever the batch size.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cli.common import add_threads_argument, set_threads
from wsl_diffusion.data.images import image_grid, save_png, save_samples_npz
from wsl_diffusion.run import load_model
from wsl_diffusion.sampling import SOLVERS, sample_per_class


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sample", help="draw class-conditional samples from a run (PNG grid + .npz)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory made by `wsl-diff train`")
    p.add_argument("--per-class", type=int, required=True, help="images per class")
    p.add_argument("--out", required=True, help="the PNG grid to write; the samples go to the same name .npz")
    p.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance weight w >= 0 (default 0)")
    p.add_argument("--steps", type=int, default=18, help="sampler steps (default 18)")
    p.add_argument("--solver", choices=tuple(SOLVERS), default="heun")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--upscale", type=int, default=None,
                   help="enlarge the grid by pixel repetition (default: images shown at least 32 px)")
    p.add_argument("--batch-size", type=int, default=256)
    add_threads_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=run)
    return p


def check_png_path(out: Path) -> Path:
    """A writable .png path in an existing directory, or ValueError saying what to change."""
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out} must end in .png (the samples are also written as {out.with_suffix('.npz').name})")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"--out {out}: directory {parent} does not exist; create it first")
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name ending in .png")
    return out


def run(args: argparse.Namespace) -> int:
    if args.per_class < 1:
        raise ValueError(f"--per-class must be >= 1; got {args.per_class}")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1; got {args.steps}")
    if args.upscale is not None and args.upscale < 1:
        raise ValueError(f"--upscale must be >= 1; got {args.upscale}")
    out = check_png_path(Path(args.out))
    set_threads(args.threads)
    net, ckpt, config = load_model(Path(args.run_dir))
    t0 = time.perf_counter()
    images, labels = sample_per_class(net, per_class=args.per_class, seed=args.seed, guidance=args.guidance,
                                      num_steps=args.steps, solver=args.solver, batch_size=args.batch_size)
    seconds = time.perf_counter() - t0
    h = int(images.shape[-2])
    upscale = args.upscale or max(1, -(-32 // h))
    save_png(image_grid(images, rows=net.num_classes), out, upscale=upscale)
    npz = out.with_suffix(".npz")
    save_samples_npz(npz, images, labels, run_dir=str(args.run_dir), seed=args.seed, guidance=args.guidance,
                     num_steps=args.steps, solver=args.solver, class_names=list(ckpt.get("class_names", [])))
    info = {"grid": str(out), "samples": str(npz), "num_images": int(len(images)), "per_class": args.per_class,
            "num_classes": int(net.num_classes), "seconds": seconds}
    if args.json:
        print(json.dumps(info))
    else:
        print(f"wrote {out} ({net.num_classes} rows x {args.per_class}) and {npz} "
              f"({len(images)} images, {seconds:.1f} s)", file=sys.stdout)
    return 0
