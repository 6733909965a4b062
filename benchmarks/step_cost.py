"""Cost of one DMIS training step relative to one vanilla step, at equal batch, on digits.

    python benchmarks/step_cost.py [--model small] [--batch-size 128] [--steps 30] [--json]

For each supervision kind the two methods are timed in the same process, interleaved in rounds
(vanilla, DMIS-EM, DMIS-WDSM, vanilla, ...) so that machine noise hits all of them alike; the
reported numbers are ratios of medians. The EM form's table refresh is timed separately and
amortised over its settled refresh interval (`TrainConfig.table_refresh_max_kimg`, 32 kimg), so "em+table" is the full cost.
"em k=1" is the EM form with one class per image (`--topk 1`) on the same table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from label_models.corruption import CorruptionSpec, corrupt
from wsl_diffusion.config import TrainConfig
from wsl_diffusion.data.datasets import flat_features, load_digits_split, to_model_space
from wsl_diffusion.training.loop import (draw_batch, initial_log_prior, initial_transition, label_tensors, new_state,
                                         refresh_table, step_loss)

SETTINGS = {
    "noisy (sym 40%)": CorruptionSpec(supervision="noisy", noise="sym", rate=0.4),
    "partial (q 0.3)": CorruptionSpec(supervision="partial", q=0.3),
    "semi (10%)": CorruptionSpec(supervision="semi", labelled_fraction=0.1),
    "pu (even digits)": CorruptionSpec(supervision="pu", labelled_fraction=0.5),
}


def time_step(config, state, images, labels, tensors) -> float:
    batch = draw_batch(config, state, len(images), tuple(images.shape[1:]), labels.num_classes)
    t0 = time.perf_counter()
    loss, _ = step_loss(config, state, state.net, batch, images=images, labels=labels, **tensors)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    return time.perf_counter() - t0


def measure(setting: str, spec: CorruptionSpec, *, model: str, batch_size: int, steps: int) -> dict:
    train, _ = load_digits_split()
    labels = corrupt(train.targets, num_classes=10, spec=spec, features=flat_features(train))
    images = to_model_space(train.images)
    transition = initial_transition(labels, TrainConfig())
    tensors = label_tensors(labels, assumed_noise_rate=0.2, transition=transition)
    variants = {
        "vanilla": TrainConfig(method="vanilla", model=model, batch_size=batch_size),
        "em": TrainConfig(method="dmis", gen_form="em", model=model, batch_size=batch_size),
        "em_k1": TrainConfig(method="dmis", gen_form="em", topk=1, model=model, batch_size=batch_size),
        "wdsm": TrainConfig(method="dmis", gen_form="wdsm", model=model, batch_size=batch_size),
    }
    states = {}
    for name, cfg in variants.items():
        states[name] = new_state(cfg, images.shape[1:], labels.num_classes, initial_log_prior(labels), len(images), "cpu",
                                 transition=transition)
    # one refresh each for the DMIS variants so the classification term is active, as in training
    t0 = time.perf_counter()
    refresh_table(states["em"], variants["em"], images, dict(tensors), labels)
    refresh_seconds = time.perf_counter() - t0
    k1, em = states["em_k1"], states["em"]  # the same table, so k = 1 and k = 2 differ only in the step
    k1.table, k1.refreshes, k1.temperature, k1.transition = em.table.clone(), em.refreshes, em.temperature, em.transition
    states["wdsm"].refreshes = 1
    times = {name: [] for name in variants}
    for round_ in range(steps + 2):
        for name, cfg in variants.items():
            dt = time_step(cfg, states[name], images, labels, tensors)
            if round_ >= 2:  # two warm-up rounds
                times[name].append(dt)
    med = {name: statistics.median(v) for name, v in times.items()}
    em_cfg = variants["em"]
    # amortised over the settled interval: the E-step schedule starts at refresh_kimg and doubles
    # up to table_refresh_max_kimg once the table stops moving
    refresh_every = (em_cfg.table_refresh_max_kimg or em_cfg.refresh_kimg(labels.kind)) * 1000 / batch_size
    em_full = med["em"] + refresh_seconds / refresh_every
    return {
        "setting": setting, "vanilla_s": med["vanilla"], "em_s": med["em"], "em_k1_s": med["em_k1"], "wdsm_s": med["wdsm"],
        "table_refresh_s": refresh_seconds, "refresh_every_steps": refresh_every,
        "ratio_em": med["em"] / med["vanilla"], "ratio_em_with_table": em_full / med["vanilla"],
        "ratio_em_k1": med["em_k1"] / med["vanilla"],
        "ratio_em_k1_with_table": (med["em_k1"] + refresh_seconds / refresh_every) / med["vanilla"],
        "ratio_wdsm": med["wdsm"] / med["vanilla"], "topk": em_cfg.topk,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [measure(name, spec, model=args.model, batch_size=args.batch_size, steps=args.steps)
               for name, spec in SETTINGS.items()]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"model={args.model} batch={args.batch_size} steps={args.steps} threads={args.threads}")
    print(f"{'setting':18s} {'vanilla ms':>10s} {'EM/van':>7s} {'EM+table/van':>13s} {'EM k=1/van':>11s} "
          f"{'k=1+table':>10s} {'WDSM/van':>9s} {'refresh s':>9s}")
    for r in results:
        print(f"{r['setting']:18s} {1000 * r['vanilla_s']:10.1f} {r['ratio_em']:7.2f} {r['ratio_em_with_table']:13.2f} "
              f"{r['ratio_em_k1']:11.2f} {r['ratio_em_k1_with_table']:10.2f} {r['ratio_wdsm']:9.2f} "
              f"{r['table_refresh_s']:9.2f}")


if __name__ == "__main__":
    main()
