"""Score a candidate against the default on paired validation runs (same setting, same seed, so
the same held-out rows), as the rules in benchmarks/results/digits/select/ read them.

    python benchmarks/paired_trial.py --cand runs/xv/{setting}/posterior/seed{seed} \
        --default runs/xv/{setting}/default/seed{seed} --settings sym-40,instance-40,asym-40 \
        --seeds 3,4,5 --json out.json

Per setting and seed: the paired per-row validation gain under the held-out T
(`row_log_lik_heldout_t`), the shared T (`row_log_lik_shared`) and each run's own T
(`row_log_lik`); the agreement of each model's most probable class with the row's noisy label
(`row_agreement_shared`: the shared T is symmetric, so the label favours exactly its own class);
the held-out T's dominant rows; log |det T| of each run's own estimate
(label-free). Per setting over the seeds: the mean gain against the root mean square of the
per-seed standard errors, as `select_defaults.report` pools them; over all settings, the mean of
every per-seed gain. Read from the truth and printed
beside, chosen by nothing: the final table's true-class rate, T's max error, test accuracy. A
pair whose runs are not both finished is skipped and listed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from select_defaults import log_det_transition
from wsl_diffusion.eval.validation import run_validation

SCORES = {"held-out T": "row_log_lik_heldout_t", "shared T": "row_log_lik_shared", "own T": "row_log_lik",
          "agreement": "row_agreement_shared"}
# what a per-row gain is in: log-likelihoods in nats per row; agreement (the model's most probable
# class is the row's noisy label: 1 or 0) in the share of the validation rows
UNITS = {"agreement": "share of rows"}


def last_refresh(run: Path) -> dict:
    """The run's last refresh record in stats.jsonl (diagnostics included)."""
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines() if '"refresh"' in line]
    return rows[-1] if rows else {}


def describe(run: Path) -> dict:
    """What the report needs of one finished run: its validation rows and the label-free and
    truth-reading numbers."""
    v = run_validation(run)
    summary = json.loads((run / "summary.json").read_text())
    r = last_refresh(run)
    return {"rows": {name: v[key] for name, key in SCORES.items() if key in v},
            "dominant_rows": v.get("dominant_rows"), "log_det_t": log_det_transition(run),
            "settled": bool(r.get("table_settled", False)),
            "table_true_class": r.get("table_true_class_rate"), "t_error_max": r.get("transition_error_max"),
            "test": summary.get("test_accuracy_ema")}


def paired(cand: dict, default: dict) -> dict:
    """Mean and standard error of the per-row gain of `cand` over `default`, per score."""
    out = {}
    for name in cand["rows"]:
        d = np.asarray(cand["rows"][name]) - np.asarray(default["rows"][name])
        out[name] = (float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))))
    return out


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def num(x: float | None, digits: int) -> str:
    """x to `digits` decimals; "-" for a run without it (a second stage has no T)."""
    return "-" if x is None else f"{x:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cand", required=True, help="candidate run directory pattern with {setting} and {seed}")
    p.add_argument("--default", required=True, help="default run directory pattern with {setting} and {seed}")
    p.add_argument("--settings", default="sym-40,instance-40,asym-40")
    p.add_argument("--seeds", default="3,4,5")
    p.add_argument("--json", default=None, help="write the per-seed records here")
    args = p.parse_args()
    lines = ["| setting | seed | gain, held-out T | shared T | own T | agreement | dominant rows | log det T | "
             "table true class % | T max error | test % (not used) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    every: dict[str, list[float]] = {}
    pooled, records, missing = [], [], []
    for setting in args.settings.split(","):
        gains: dict[str, list[tuple[float, float]]] = {}
        for seed in (int(s) for s in args.seeds.split(",")):
            c_dir, d_dir = (Path(pattern.format(setting=setting, seed=seed)) for pattern in (args.cand, args.default))
            if not ((c_dir / "summary.json").is_file() and (d_dir / "summary.json").is_file()):
                missing.append(f"{setting} seed {seed}")
                continue
            c, d = describe(c_dir), describe(d_dir)
            g = paired(c, d)
            for name, value in g.items():
                gains.setdefault(name, []).append(value)
            records.append({"setting": setting, "seed": seed, "cand": str(c_dir), "default": str(d_dir), "gain": g,
                            **{f"{k}_{arm}": r[k] for arm, r in (("cand", c), ("default", d))
                               for k in ("dominant_rows", "log_det_t", "settled", "table_true_class", "t_error_max",
                                         "test")}})
            cell = lambda name: "" if name not in g else f"{g[name][0]:+.4f} ± {g[name][1]:.4f}"  # noqa: E731
            lines.append(f"| {setting} | {seed} | {cell('held-out T')} | {cell('shared T')} | {cell('own T')} | "
                         f"{cell('agreement')} | "
                         f"{d['dominant_rows']} -> {c['dominant_rows']} | {num(d['log_det_t'], 2)} -> {num(c['log_det_t'], 2)} | "
                         f"{pct(d['table_true_class'])} -> {pct(c['table_true_class'])} | "
                         f"{num(d['t_error_max'], 3)} -> {num(c['t_error_max'], 3)} | {pct(d['test'])} -> {pct(c['test'])} |")
        for name, values in gains.items():
            every.setdefault(name, []).extend(m for m, _ in values)
            mean = float(np.mean([m for m, _ in values]))
            se = float(np.sqrt(np.mean([s ** 2 for _, s in values])))
            pooled.append(f"- {setting}, {name}: {mean:+.4f} ± {se:.4f} {UNITS.get(name, 'nats/row')} over "
                          f"{len(values)} seeds ({mean / se if se > 0 else float('nan'):+.1f} s.e.)")
    for name, values in every.items():
        pooled.append(f"- every setting, {name}: mean of the {len(values)} per-seed gains {float(np.mean(values)):+.4f}")
    print("\n".join(lines + [""] + pooled + ([f"\nnot finished: {', '.join(missing)}"] if missing else [])))
    if args.json:
        Path(args.json).write_text(json.dumps({"records": records, "pooled": pooled, "missing": missing}, indent=1))


if __name__ == "__main__":
    main()
