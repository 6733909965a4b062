"""Choose DMIS defaults without the test split: each candidate setting is trained with a
validation split of the training images (`--validation 0.2`) and ranked by how well it predicts
those images' imprecise labels.

    python benchmarks/select_defaults.py --out runs/select --seeds 0 --shard 0/2 &   # two 1-thread
    python benchmarks/select_defaults.py --out runs/select --seeds 0 --shard 1/2     # processes
    python benchmarks/select_defaults.py --out runs/select --report                  # the table

Every run is `wsl-diff train --kimg 128 --model small --validation 0.2` on digits (the settings of
`dmis_ablation.py`) with one change from the defaults. A candidate may replace the default only when
its validation log-likelihood of the imprecise labels (`validation_scores`: tau fitted on the
validation rows, so it ranks what the models know rather than how they were calibrated) beats
the default's by more than two standard errors of the per-row paired difference (same rows, same
seed), first on seed 0 and then over the seeds run to confirm it (`--seeds 1,2 --only CAND`).
For noisy labels the gain is scored under one T for both runs, the label model's symmetric T
(`log_lik_shared`), since a run's own estimated T can absorb a confusion its model makes.
The report lists every candidate that passes; between several, the README says which was taken
and why. Agreement is the share of validation rows whose predicted class the label favours. Test accuracy
is printed beside them only to show whether the choice agrees with it: nothing reads it to
choose. A finished run (its summary.json exists) is skipped, so the command resumes.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from dmis_ablation import CONFIRM_SETTINGS, MORE_SETTINGS, SETTINGS, chosen_cells, fmt, slug, sweep_parser, train_cell
from wsl_diffusion.eval.validation import run_validation

VALIDATION = ["--validation", "0.2"]
GAIN_STDERRS = 2.0  # a candidate replaces the default only when it is this many standard errors better
# Each one change from the defaults; in order of priority, so a partial sweep is a coherent one.
CANDIDATES = {
    "default": [],
    "interval [0.2, 2.5]": ["--sigmas", "0.2,2.5"],
    "interval [0.8, 10]": ["--sigmas", "0.8,10"],
    "lambda_cls 0.3": ["--lambda-cls", "0.3"],
    "lambda_cls 3": ["--lambda-cls", "3"],
    "first refresh 16 kimg": ["--table-refresh-kimg", "16"],
    "forward-corrected loss": ["--noisy-cls", "forward"],
    "topk 3": ["--topk", "3"],
    "topk 2": ["--topk", "2"],  # the other side of topk 3, once 3 is the noisy-label default
    "topk 4": ["--topk", "4"],
    "table-pruned coarse": ["--table-pruned", "coarse"],
    "T starts at 0.4": ["--assumed-noise-rate", "0.4"],
    "table unmix": ["--table-unmix"],  # the noisy-label default since the minimum-volume rule chose it
    "no table unmix": ["--no-table-unmix"],  # its other side (runs/select2 holds the "table unmix" rows)
}
NOISY_ONLY = {"forward-corrected loss", "T starts at 0.4", "table unmix", "no table unmix"}
SELECT_SETTINGS = {**SETTINGS, **MORE_SETTINGS, **CONFIRM_SETTINGS}
CONFIRM_ONLY = {"default", "table unmix"}  # the candidates run on CONFIRM_SETTINGS


def cells(seeds: list[int]) -> list[tuple[str, str, int]]:
    return [(setting, cand, seed) for cand in CANDIDATES for seed in seeds for setting in SELECT_SETTINGS
            if not (cand in NOISY_ONLY and "noisy" not in SELECT_SETTINGS[setting])
            and not (setting in CONFIRM_SETTINGS and cand not in CONFIRM_ONLY)]


def run_dir(out: Path, setting: str, cand: str, seed: int) -> Path:
    return out / setting / slug(cand) / f"seed{seed}"


def read(path: Path) -> dict | None:
    if not (path / "summary.json").is_file():
        return None
    s = json.loads((path / "summary.json").read_text())
    return {**s["validation"], "test": s["test_accuracy_ema"], "path": path, "log_det_t": log_det_transition(path)}


def log_det_transition(path: Path) -> float | None:
    """log |det T| of the run's final estimated transition (None for a run without one): the volume
    that the minimum-volume criterion compares. It reads only what the run estimated, never the truth."""
    t = torch.load(path / "checkpoint.pt", map_location="cpu", weights_only=False).get("transition")
    return None if t is None or not t.numel() else float(torch.linalg.slogdet(t.double())[1])


def paired_gain(cand: Path, default: Path, score: str = "log_lik") -> tuple[float, float]:
    """Mean and standard error of the per-row validation log-likelihood gain of `cand` over
    `default`: the same rows (same seed), so the rows' own difficulty cancels. score: "log_lik"
    (each run's labels under its own estimated T) or "log_lik_shared" (noisy labels under the
    label model's symmetric T, one for both runs; "agreement_shared" the share of argmax = z);
    "auto": the shared one where the runs have it (noisy labels), else "log_lik"."""
    a, b = run_validation(cand), run_validation(default)
    if score == "auto":
        score = "log_lik_shared" if "row_log_lik_shared" in a else "log_lik"
    d = np.array(a[f"row_{score}"]) - np.array(b[f"row_{score}"])
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def report(out: Path, seeds: list[int] | None = None) -> str:
    """The Markdown table and the candidates that beat the default, over `seeds` (None: all)."""
    lines = ["| setting | candidate | seeds | validation rows | validation log-lik (nats/row) | gain over default "
             "(paired, ± s.e.) | validation agreement % | log det T | test acc. % (not used) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    choices = []
    for setting in SELECT_SETTINGS:
        base = {seed: r for seed in (seeds or range(10)) if (r := read(run_dir(out, setting, "default", seed)))}
        passed = []
        for cand in CANDIDATES:
            rows = [r for seed in base if (r := read(run_dir(out, setting, cand, seed)))]
            if not rows:
                continue
            # Noisy labels under the shared T: a run's own T can make a consistently wrong model tie.
            gains = [paired_gain(r["path"], base[int(r["path"].name[4:])]["path"], score="auto") for r in rows]
            # Over seeds: the mean gain, against the root mean square of the per-seed standard errors
            # (a bar sqrt(seeds) higher than the row noise of the mean alone, for the seed-to-seed spread).
            gain, se = float(np.mean([g for g, _ in gains])), float(np.sqrt(np.mean([s ** 2 for _, s in gains])))
            if cand != "default" and gain > GAIN_STDERRS * se:
                passed.append(f"**{cand}** ({gain:+.4f} ± {se:.4f} nats/row, {len(rows)} seeds)")
            lines.append(f"| {setting} | {cand} | {len(rows)} | {rows[0]['rows']} | "
                         f"{fmt([r['log_lik'] for r in rows], 1, 4)} | "
                         + ("" if cand == "default" else f"{gain:+.4f} ± {se:.4f}")
                         + f" | {fmt([r['agreement'] for r in rows], digits=1)} | "
                         f"{fmt([r['log_det_t'] for r in rows if r['log_det_t'] is not None], 1)} | {fmt([r['test'] for r in rows])} |")
        if base:
            choices.append(f"- {setting}: " + ("nothing beats the default" if not passed else
                                               "beats the default: " + ", ".join(passed)))
    return "\n".join(lines + [""] + choices)


def main() -> None:
    p = sweep_parser(__doc__, "0")
    p.add_argument("--reverse", action="store_true", help="run the cells from the last one")
    p.add_argument("--join", action="store_true",
                   help="leave any cell another worker has started (its run directory exists): a second worker "
                        "that joins a running sweep")
    p.add_argument("--only", default=None, help="candidates to run, separated by | (default: all)")
    p.add_argument("--settings", default=None, help="comma-separated settings to run (default: all)")
    args = p.parse_args()
    out = Path(args.out)
    if args.report:  # over the seeds given with --seeds, else every seed present
        print(report(out, [int(s) for s in args.seeds.split(",")] if "--seeds" in " ".join(sys.argv) else None))
        return
    todo = chosen_cells(cells([int(s) for s in args.seeds.split(",")]), args, sep="|")
    for setting, cand, seed in reversed(todo) if args.reverse else todo:
        target = run_dir(out, setting, cand, seed)
        if args.join and target.exists():
            continue
        train_cell(target, setting, seed, [*CANDIDATES[cand], *VALIDATION], args.threads)


if __name__ == "__main__":
    main()
