"""`wsl-diff benchmark`: settings x methods x seeds against scikit-learn and neural baselines.

    wsl-diff benchmark --preset digits-quick --out runs/bench-quick
    wsl-diff benchmark --preset digits --seeds 0,1,2 --out runs/bench
    wsl-diff benchmark --preset digits --settings sym-40,partial-0.5 --methods dmis,svc,svc_selftrain \\
        --kimg 64 --out runs/bench-small

Writes OUT/results.json (one record per setting x method x seed, rewritten after every cell),
OUT/report.md (mean ± std per setting, best in bold, training budget beside every number, a link
to the DMIS sample grid) and the diffusion runs under OUT/runs/<setting>/<method>/seed<k>.
Running the same command again skips finished cells and retries crashed ones. On 2 cores, two
shards sharing one --out finish sooner than one process:

    wsl-diff benchmark --preset digits --out runs/bench --threads 1 --shard 0/2 &
    wsl-diff benchmark --preset digits --out runs/bench --threads 1 --shard 1/2
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from cli.common import MODEL_NAMES, add_output_arguments, add_threads_argument, set_threads


def _names(text: str | None, flag: str) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",")]
    if not names or any(not t for t in names):
        raise ValueError(f"{flag} takes comma-separated names like a,b; got {text!r}")
    return names


def parse_seeds(text: str | None) -> list[int] | None:
    """'0,1,2' -> [0, 1, 2]; ValueError for anything but distinct non-negative integers."""
    if text is None:
        return None
    parts = [t.strip() for t in text.split(",")]
    if not parts or any(not t.isdigit() for t in parts):
        raise ValueError(f"--seeds takes comma-separated non-negative integers like 0,1,2; got {text!r}")
    seeds = [int(t) for t in parts]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {text!r}")
    return seeds


def parse_shard(text: str | None) -> tuple[int, int]:
    """'1/2' -> (1, 2); ValueError unless 0 <= I < N."""
    if text is None:
        return (0, 1)
    parts = text.split("/")
    if len(parts) != 2 or not all(t.strip().isdigit() for t in parts):
        raise ValueError(f"--shard takes I/N like 0/2; got {text!r}")
    i, n = (int(t) for t in parts)
    if not 0 <= i < n:
        raise ValueError(f"--shard I/N needs 0 <= I < N; got {text!r}")
    return (i, n)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    # Imported here: the catalogue pulls in torch, sklearn and timm, which other subcommands skip.
    from wsl_diffusion.bench.settings import PRESETS, SETTINGS

    p = subparsers.add_parser("benchmark", help="benchmark DMIS and vanilla diffusion against baselines",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=tuple(PRESETS), default="digits",
                   help="digits: 12 settings x 3 seeds; digits-quick: sym-40, partial-0.3, semi-10, 1 seed")
    p.add_argument("--out", required=True, help="output directory (results.json, report.md, runs/)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the preset's)")
    p.add_argument("--settings", default=None, help=f"comma-separated subset of: {', '.join(SETTINGS)}")
    p.add_argument("--methods", default=None,
                   help="comma-separated subset of methods: vanilla, dmis, dmis-refine (the two-stage "
                        "noisy-label method) and baseline names (default: all that apply to each setting)")
    p.add_argument("--kimg", type=float, default=None, help="diffusion training length (default: the preset's)")
    p.add_argument("--model", choices=MODEL_NAMES, default=None,
                   help="diffusion network size (default: the preset's)")
    add_threads_argument(p)
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run only shard I of N of the (setting, seed) groups; N processes with the same "
                        "--out (e.g. --shard 0/2 and --shard 1/2 with --threads 1 on 2 cores) share results.json")
    add_output_arguments(p, what="the records")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from wsl_diffusion.bench import baselines
    from wsl_diffusion.bench.report import REPORT_NAME, summary_rows
    from wsl_diffusion.bench.runner import run_benchmark
    from wsl_diffusion.bench.settings import DIFFUSION_METHODS

    seeds = parse_seeds(args.seeds)
    settings = _names(args.settings, "--settings")
    methods = _names(args.methods, "--methods")
    shard = parse_shard(args.shard)
    set_threads(args.threads)
    console = Console(stderr=True)
    if methods is None:
        for b in baselines.BASELINES:
            if not b.installed:
                console.print(f"{b.name} left out: it needs {b.requires} (pip install 'wsl-diffusion[compare]')")
    records = run_benchmark(args.out, preset=args.preset, seeds=seeds, settings=settings, methods=methods,
                            kimg=args.kimg, model=args.model, shard=shard, progress=not (args.quiet or args.json),
                            console=console)
    failed = sum("error" in r for r in records)
    if args.json:
        print(json.dumps({"out": str(args.out), "failed": failed, "records": records}))
        return 0
    rows = summary_rows(records)
    shown = [m for m in DIFFUSION_METHODS if any(m in row for row in rows)]
    table = Table(title=f"benchmark {args.preset}: test accuracy %, mean ± std over seeds")
    for col in ("setting", *shown, "best baseline", "best"):
        table.add_column(col, justify="left" if col in ("setting", "best baseline", "best") else "right")
    for row in rows:
        diff = [f"{row[m].text()} (n={row[m].n}, {row[m].budget})" if m in row else "" for m in shown]
        base = row.get("best_baseline")
        table.add_row(row["setting"], *diff,
                      f"{base.method} {base.text()} ({base.budget})" if base else "", ", ".join(row["best"]))
    Console(width=160).print(table)
    console.print(f"{len(records)} records, {failed} failed -> {args.out}/{REPORT_NAME}")
    return 0
