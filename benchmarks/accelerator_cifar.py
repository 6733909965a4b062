"""CIFAR-10 at symmetric 40% noise on one GPU: DMIS vs vanilla at a fixed short budget.

    python benchmarks/accelerator_cifar.py --data ../shared/data/cifar10-jpeg.tar.gz --out runs/cifar \
        [--seconds 150] [--train-per-class 1000] [--test-per-class 200] [--compile] [--json]

For each method: train the `base` model (bf16 autocast, channels-last, optional torch.compile) for
`--seconds` of wall time on a per-class subset of the training split with sym-40 labels, then
evaluate the EMA model's pruned diffusion posterior on a test subset. Reports images/s of training,
kimg reached, and test accuracy / NFE / images/s of the posterior for a few schedules. Designed to
fit in about 8 minutes of device time with the defaults; `--device cpu --model tiny --seconds 5`
is the CPU smoke test run by the test suite.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch

from label_models.corruption import CorruptionSpec, corrupt
from wsl_diffusion.config import Execution, TrainConfig
from wsl_diffusion.data.datasets import flat_features, to_model_space
from wsl_diffusion.data.sources import load_dataset
from wsl_diffusion.eval.posterior_metrics import evaluate_posterior
from wsl_diffusion.posterior import PosteriorConfig
from wsl_diffusion.training.loop import train
from wsl_diffusion.run import load_model, run_posterior


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="CIFAR-10 tarball / folder / pickle dir")
    p.add_argument("--out", required=True)
    p.add_argument("--methods", default="vanilla,dmis")
    p.add_argument("--seconds", type=float, default=150.0, help="training wall time per method")
    p.add_argument("--train-per-class", type=int, default=1000)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--model", default="base")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--device", default="cuda")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--refresh-kimg", type=float, default=None, help="first E-step interval (default: the library's)")
    p.add_argument("--posterior-fit", default="fixed", help="fixed, prune or refit (TrainConfig.posterior_fit)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    t0 = time.perf_counter()
    train_data, _ = load_dataset(args.data, subset=args.train_per_class)
    _, test_data = load_dataset(args.data, subset=args.test_per_class)
    load_seconds = time.perf_counter() - t0
    spec = CorruptionSpec(supervision="noisy", noise="sym", rate=0.4, seed=0)
    labels = corrupt(train_data.targets, num_classes=train_data.num_classes, spec=spec,
                     features=flat_features(train_data), dataset_name="cifar10")
    on_gpu = args.device.startswith("cuda")
    posterior = PosteriorConfig(schedule="interval", sigma_lo=0.4, sigma_hi=5.0, num_sigmas=6, keep_classes=3,
                                prune_sigmas=2)
    result = {"data": args.data, "train_images": len(train_data), "test_images": len(test_data),
              "load_seconds": load_seconds, "device": torch.cuda.get_device_name() if on_gpu else "cpu",
              "methods": {}}
    test_images = to_model_space(test_data.images).to(args.device)
    for method in args.methods.split(","):
        config = TrainConfig(
            dataset=args.data, supervision=spec.to_dict(), method=method, model=args.model,
            batch_size=args.batch_size, total_kimg=100_000.0, lr=args.lr, lr_rampup_kimg=10.0,
            ema_halflife_kimg=20.0, posterior=posterior, table_refresh_kimg=args.refresh_kimg,
            posterior_fit=args.posterior_fit,
            checkpoint_every_kimg=100_000.0, log_every_kimg=32.0, samples_per_class=8,
            subset=args.train_per_class)
        execution = Execution(device=args.device, precision="bf16" if on_gpu else "fp32", channels_last=on_gpu,
                              compile=args.compile)
        run_dir = Path(args.out) / method
        summary = train(config, run_dir, train_data=train_data, labels=labels, max_seconds=args.seconds,
                        execution=execution, progress=not args.json)
        net, ckpt, _ = load_model(run_dir, device=args.device)
        if on_gpu:
            net.to(memory_format=torch.channels_last)
        evals = {}
        schedules = {"interval x6": posterior.replace(keep_classes=None, temperature=float(ckpt["temperature"])),
                     "interval x6, keep 3 after 2": posterior.replace(temperature=float(ckpt["temperature"])),
                     "interval x4, keep 2 after 1": posterior.replace(num_sigmas=4, keep_classes=2, prune_sigmas=1,
                                                                      temperature=float(ckpt["temperature"])),
                     "the run's own (fitted) schedule": run_posterior(ckpt, config).replace(
                         temperature=float(ckpt["temperature"]))}
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else contextlib.nullcontext()
        for name, cfg in schedules.items():
            with autocast:
                ev = evaluate_posterior(net, test_images, test_data.targets, cfg, log_prior=ckpt["log_prior"].to(args.device))
            evals[name] = ev.to_dict()
        result["methods"][method] = {
            "train_seconds": summary["seconds_this_call"], "kimg": summary["kimg"], "steps": summary["steps"],
            "train_images_per_second": summary["kimg"] * 1000 / summary["seconds_this_call"],
            "table_temperature": summary["temperature"], "run_posterior": summary["posterior"],
            "posterior": evals}
        if not args.json:
            acc = evals["interval x6"]["accuracy"]
            print(f"{method}: {summary['kimg']:.0f} kimg in {summary['seconds_this_call']:.0f} s "
                  f"({result['methods'][method]['train_images_per_second']:.0f} img/s), test acc {100 * acc:.2f}%")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2) if args.json else f"wrote {Path(args.out) / 'result.json'}")


if __name__ == "__main__":
    main()
