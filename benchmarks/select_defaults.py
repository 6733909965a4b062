"""Choose DMIS defaults without the test split: each candidate setting is trained with a
validation split of the training images (`--validation 0.2`) and ranked by how well it predicts
those images' imprecise labels.

    python benchmarks/select_defaults.py --out runs/select --seeds 0 --shard 0/2 &   # two 1-thread
    python benchmarks/select_defaults.py --out runs/select --seeds 0 --shard 1/2     # processes
    python benchmarks/select_defaults.py --out runs/select --report                  # the table

Every run is `wsl-diff train --kimg 128 --model small --validation 0.2` on digits (the settings of
`dmis_ablation.py`) with one change from the defaults. The choice is the candidate with the
highest validation log-likelihood of the imprecise labels (`validation_scores`: tau fitted on
the validation rows, so it ranks what the models know rather than how they were calibrated);
agreement is the share of validation rows whose predicted class the label favours. Test accuracy
is printed beside them only to show whether the choice agrees with it: nothing reads it to
choose. A finished run (its summary.json exists) is skipped, so the command resumes.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from dmis_ablation import SETTINGS, fmt, slug, sweep_parser, train_cell

VALIDATION = ["--validation", "0.2"]
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
    "table-pruned coarse": ["--table-pruned", "coarse"],
    "T starts at 0.4": ["--assumed-noise-rate", "0.4"],
}
NOISY_ONLY = {"forward-corrected loss", "T starts at 0.4"}


def cells(seeds: list[int]) -> list[tuple[str, str, int]]:
    return [(setting, cand, seed) for cand in CANDIDATES for seed in seeds for setting in SETTINGS
            if not (cand in NOISY_ONLY and not setting.endswith("-40"))]


def run_dir(out: Path, setting: str, cand: str, seed: int) -> Path:
    return out / setting / slug(cand) / f"seed{seed}"


def read(path: Path) -> dict | None:
    if not (path / "summary.json").is_file():
        return None
    s = json.loads((path / "summary.json").read_text())
    v = s["validation"]
    return {"log_lik": v["log_lik"], "agreement": v["agreement"], "rows": v["rows"], "test": s["test_accuracy_ema"]}


def report(out: Path) -> str:
    lines = ["| setting | candidate | seeds | validation rows | validation log-lik (nats/row) | validation agreement % "
             "| test acc. % (not used) |", "|---|---|---:|---:|---:|---:|---:|"]
    choices = []
    for setting in SETTINGS:
        best = None
        for cand in CANDIDATES:
            rows = [r for seed in range(10) if (r := read(run_dir(out, setting, cand, seed)))]
            if not rows:
                continue
            ll = statistics.mean(r["log_lik"] for r in rows)
            if best is None or ll > best[1]:
                best = (cand, ll, statistics.mean(r["test"] for r in rows))
            lines.append(f"| {setting} | {cand} | {len(rows)} | {rows[0]['rows']} | "
                         f"{fmt([r['log_lik'] for r in rows], 1, 4)} | {fmt([r['agreement'] for r in rows], digits=1)} "
                         f"| {fmt([r['test'] for r in rows])} |")
        if best:
            choices.append(f"- {setting}: validation picks **{best[0]}** (test {100 * best[2]:.2f}%)")
    return "\n".join(lines + [""] + choices)


def main() -> None:
    p = sweep_parser(__doc__, "0")
    p.add_argument("--reverse", action="store_true",
                   help="run the cells from the last one, leaving any cell another worker has started (its run "
                        "directory exists): a second worker that joins a running sweep")
    args = p.parse_args()
    out = Path(args.out)
    if args.report:
        print(report(out))
        return
    i, n = (int(v) for v in args.shard.split("/"))
    todo = cells([int(s) for s in args.seeds.split(",")])[i::n]
    for setting, cand, seed in reversed(todo) if args.reverse else todo:
        target = run_dir(out, setting, cand, seed)
        if args.reverse and target.exists():
            continue
        train_cell(target, setting, seed, [*CANDIDATES[cand], *VALIDATION], args.threads)


if __name__ == "__main__":
    main()
