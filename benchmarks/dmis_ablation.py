"""DMIS ablation on digits: the E-step mechanisms added one at a time, each a `wsl-diff train` run.

    python benchmarks/dmis_ablation.py --out runs/ablation --seeds 0 --shard 0/2 &   # two 1-thread
    python benchmarks/dmis_ablation.py --out runs/ablation --seeds 0 --shard 1/2     # processes
    python benchmarks/dmis_ablation.py --out runs/ablation --report                  # the table

Every run is `wsl-diff train --kimg 128 --model small` (the digits benchmark budget) with the
variant's flags; a finished run (its summary.json exists) is skipped, so the command resumes.
The report gives test accuracy (mean ± std over the seeds present), the table's final
true-class rate and, for noisy labels, the error of the estimated T against the true one (both
read from stats.jsonl, where they are logged as diagnostics; training never reads them).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

SETTINGS = {
    "sym-40": ["--supervision", "noisy", "--noise", "sym", "--rate", "0.4"],
    "asym-40": ["--supervision", "noisy", "--noise", "asym", "--rate", "0.4"],
    "partial-0.5": ["--supervision", "partial", "--q", "0.5"],
    "semi-5": ["--supervision", "semi", "--labelled-fraction", "0.05"],
}
# Not in the ablation; select_defaults.py checks on it that a noisy-label default does not hurt
# feature-dependent noise.
MORE_SETTINGS = {"instance-40": ["--supervision", "noisy", "--noise", "instance", "--rate", "0.4"]}
# Settings no run looked at while `--table-unmix` was designed: select_defaults.py confirms on them
# (default and table unmix only) the minimum-volume rule its README section states in advance.
CONFIRM_SETTINGS = {"asym-20": ["--supervision", "noisy", "--noise", "asym", "--rate", "0.2"],
                    "sym-60": ["--supervision", "noisy", "--noise", "sym", "--rate", "0.6"]}
# The code before these changes is the "fixed" schedule (32 kimg; 16 for semi) with index
# tie-breaks and the oracle T: its numbers are benchmarks/results/digits (same code path, checked
# bit for bit on sym-40 at 64 kimg).
FIXED = ["--table-refresh-max-kimg", "0", "--table-tie-break", "index"]
VARIANTS = {
    "estimated T": ["--transition", "estimate", "--table-refresh-kimg", "32", *FIXED],
    "+ random tie-break": ["--transition", "estimate", "--table-refresh-kimg", "32", "--table-refresh-max-kimg", "0"],
    "+ E-step schedule (default)": [],
    "+ forward-corrected loss": ["--noisy-cls", "forward"],
    "oracle T (ablation)": ["--transition", "oracle"],
}
NOISY_ONLY = {"estimated T", "+ forward-corrected loss", "oracle T (ablation)"}


def cells(seeds: list[int]) -> list[tuple[str, str, int]]:
    out = []
    for setting in SETTINGS:
        for variant in VARIANTS:
            if variant in NOISY_ONLY and not setting.endswith("-40"):
                continue
            out += [(setting, variant, seed) for seed in seeds]
    return out


def slug(name: str) -> str:
    """A folder name for a variant: "+ E-step schedule (default)" -> "E-step-schedule--default"."""
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def run_dir(out: Path, setting: str, variant: str, seed: int) -> Path:
    return out / setting / slug(variant) / f"seed{seed}"


def train_cell(target: Path, setting: str, seed: int, flags: list[str], threads: int) -> None:
    """One `wsl-diff train` run of a setting at the digits benchmark budget (skipped if finished)."""
    if (target / "summary.json").is_file():
        return
    cmd = [sys.executable, "-m", "cli.main", "train", *{**SETTINGS, **MORE_SETTINGS, **CONFIRM_SETTINGS}[setting], "--label-seed", str(seed), "--seed", str(seed),
           "--kimg", "128", "--model", "small", "--samples-per-class", "0", "--threads", str(threads), "--quiet",
           "--json", "--out", str(target), *flags]
    print(" ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def run_cell(out: Path, setting: str, variant: str, seed: int, threads: int) -> None:
    flags = list(VARIANTS[variant])
    if setting == "semi-5" and "--table-refresh-kimg" in flags:  # the old semi default: every 16 kimg
        flags[flags.index("--table-refresh-kimg") + 1] = "16"
    train_cell(run_dir(out, setting, variant, seed), setting, seed, flags, threads)


def read_cell(path: Path) -> dict | None:
    if not (path / "summary.json").is_file():
        return None
    summary = json.loads((path / "summary.json").read_text())
    refreshes = [json.loads(line) for line in (path / "stats.jsonl").read_text().splitlines() if '"refresh"' in line]
    last = refreshes[-1] if refreshes else {}
    return {"accuracy": summary["test_accuracy_ema"], "table": last.get("table_true_class_rate"),
            "first_table": refreshes[0].get("table_true_class_rate") if refreshes else None,
            "t_max": last.get("transition_error_max"), "t_mean": last.get("transition_error_mean"),
            "refreshes": len(refreshes), "seconds": summary["seconds_this_call"]}


def fmt(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    if not values:
        return ""
    mean = statistics.mean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def report(out: Path) -> str:
    lines = ["| setting | variant | seeds | test acc. % | table true-class % (first -> last) | T error max / mean | refreshes | train s |",
             "|---|---|---:|---:|---|---|---:|---:|"]
    for setting in SETTINGS:
        for variant in VARIANTS:
            rows = [r for seed in range(10) if (r := read_cell(run_dir(out, setting, variant, seed)))]
            if not rows:
                continue
            t = [r for r in rows if r["t_max"] is not None]
            lines.append(f"| {setting} | {variant} | {len(rows)} | {fmt([r['accuracy'] for r in rows])} | "
                         f"{fmt([r['first_table'] for r in rows], digits=1)} -> {fmt([r['table'] for r in rows], digits=1)} | "
                         + (f"{fmt([r['t_max'] for r in t], 1, 3)} / {fmt([r['t_mean'] for r in t], 1, 3)}" if t else "")
                         + f" | {statistics.mean(r['refreshes'] for r in rows):.0f} | {statistics.mean(r['seconds'] for r in rows):.0f} |")
    return "\n".join(lines)


def sweep_parser(doc: str, seeds: str) -> argparse.ArgumentParser:
    """The flags every sweep script here shares: where, which seeds, which shard, threads, report."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default=seeds)
    p.add_argument("--shard", default="0/1", help="I/N: run every N-th cell from the I-th")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", action="store_true", help="print the Markdown table of what has finished")
    return p


def chosen_cells(todo: list[tuple[str, str, int]], args, *, sep: str = ",") -> list[tuple[str, str, int]]:
    """The cells of `todo` that --only (variants joined by `sep`), --settings and --shard I/N keep."""
    if args.only:
        todo = [c for c in todo if c[1] in args.only.split(sep)]
    if args.settings:
        todo = [c for c in todo if c[0] in args.settings.split(",")]
    i, n = (int(v) for v in args.shard.split("/"))
    return todo[i::n]


def main() -> None:
    p = sweep_parser(__doc__, "0,1,2")
    p.add_argument("--only", default=None, help="comma-separated variants to run (default: all)")
    p.add_argument("--settings", default=None, help="comma-separated settings to run (default: all)")
    args = p.parse_args()
    out = Path(args.out)
    if args.report:
        print(report(out))
        return
    for setting, variant, seed in chosen_cells(cells([int(s) for s in args.seeds.split(",")]), args):
        run_cell(out, setting, variant, seed, args.threads)


if __name__ == "__main__":
    main()
