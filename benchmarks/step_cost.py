"""Cost of one DMIS training step relative to one vanilla step, at equal batch, on digits.

    python benchmarks/step_cost.py [--model small] [--batch-size 128] [--steps 30] [--json]

For each supervision kind the two methods are timed in the same process, interleaved in rounds
(vanilla, DMIS-EM, DMIS-WDSM, vanilla, ...) so that machine noise hits all of them alike; the
reported numbers are ratios of medians. The EM form's table refresh is timed separately and
amortised over its settled refresh interval (`TrainConfig.table_refresh_max_kimg`, 32 kimg), so "em+table" is the full cost.
"em k=K" is the EM form with K classes per image (`--topk K`, default 1 and 3 beside the default 2) on the
same table; a K not below the number of classes (PU has 2) is skipped.

    python benchmarks/step_cost.py --threads 1 --topk 1,3
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


def measure(setting: str, spec: CorruptionSpec, *, model: str, batch_size: int, steps: int,
            topks: tuple[int, ...] = (1, 3)) -> dict:
    train, _ = load_digits_split()
    labels = corrupt(train.targets, num_classes=10, spec=spec, features=flat_features(train))
    images = to_model_space(train.images)
    transition = initial_transition(labels, TrainConfig())
    tensors = label_tensors(labels, assumed_noise_rate=0.2, transition=transition)
    variants = {
        "vanilla": TrainConfig(method="vanilla", model=model, batch_size=batch_size),
        "em": TrainConfig(method="dmis", gen_form="em", model=model, batch_size=batch_size),
        **{f"em_k{k}": TrainConfig(method="dmis", gen_form="em", topk=k, model=model, batch_size=batch_size)
           for k in topks if k < labels.num_classes},
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
    em = states["em"]
    for name in variants:  # the same table, so the values of k differ only in the step
        if name.startswith("em_k"):
            st = states[name]
            st.table, st.refreshes, st.temperature, st.transition = (em.table.clone(), em.refreshes, em.temperature,
                                                                     em.transition)
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
    result = {
        "setting": setting, "vanilla_s": med["vanilla"], "em_s": med["em"], "wdsm_s": med["wdsm"],
        "table_refresh_s": refresh_seconds, "refresh_every_steps": refresh_every,
        "ratio_em": med["em"] / med["vanilla"], "ratio_em_with_table": em_full / med["vanilla"],
        "ratio_wdsm": med["wdsm"] / med["vanilla"], "topk": em_cfg.topk,
    }
    for name in variants:
        if name.startswith("em_k"):
            result[f"{name}_s"] = med[name]
            result[f"ratio_{name}"] = med[name] / med["vanilla"]
            result[f"ratio_{name}_with_table"] = (med[name] + refresh_seconds / refresh_every) / med["vanilla"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--topk", default="1,3", help="comma-separated k timed beside the default k (2)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    topks = tuple(int(k) for k in args.topk.split(",") if k.strip())
    results = [measure(name, spec, model=args.model, batch_size=args.batch_size, steps=args.steps, topks=topks)
               for name, spec in SETTINGS.items()]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"model={args.model} batch={args.batch_size} steps={args.steps} threads={args.threads}")
    head = f"{'setting':18s} {'vanilla ms':>10s} {'EM/van':>7s} {'EM+table/van':>13s}"
    for k in topks:
        head += f" {f'EM k={k}/van':>11s} {f'k={k}+table':>10s}"
    print(head + f" {'WDSM/van':>9s} {'refresh s':>9s}")
    for r in results:
        line = f"{r['setting']:18s} {1000 * r['vanilla_s']:10.1f} {r['ratio_em']:7.2f} {r['ratio_em_with_table']:13.2f}"
        for k in topks:
            ratio, full = r.get(f"ratio_em_k{k}"), r.get(f"ratio_em_k{k}_with_table")
            line += f" {ratio:11.2f} {full:10.2f}" if ratio is not None else f" {'-':>11s} {'-':>10s}"
        print(line + f" {r['ratio_wdsm']:9.2f} {r['table_refresh_s']:9.2f}")


if __name__ == "__main__":
    main()
