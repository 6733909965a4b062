"""Time reading every member of a tar archive with the hardened walker in
`wsl_diffusion.data.tar` against a bare `tarfile` stream loop, interleaved in one run
(walker, tarfile[, old], walker, tarfile[, old], ...).

    git show HEAD:wsl_diffusion/data/tar.py > /tmp/old_tar.py   # optional: the unhardened walker
    python benchmarks/tar_read.py [--archive PATH] [--old /tmp/old_tar.py] [--rounds 2] [--limit N] [--json]

Each pass opens the archive, walks it and touches every member's bytes (as the dataset loader
does), for the first --limit members if given. The tarfile pass is the least any tarfile-based
reader costs: `tarfile.open(fileobj=f, mode="r|*")` and `extractfile(m).read()` per regular
member, no checks. The original walker (from --old, if that file exists) is timed too, to show
what the hardening costs. All readers must agree on the member count and the total bytes.
Reported: the time of each pass, the median per reader and the ratios of the medians. The
issue's rule: use tarfile unless it is more than 1.5x slower than the walker.
The archive is only read; nothing is written next to it.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tarfile
import time
from pathlib import Path

from wsl_diffusion.data import tar as walker

DEFAULT_ARCHIVE = Path("/work/shared/data/cifar10-jpeg.tar.gz")
DEFAULT_OLD = Path("/tmp/old_tar.py")
BAR = 1.5


def load_old(path: Path):
    """The original walker module from `path`, or None when there is no such file."""
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("old_tar_walker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "walk_tar") or hasattr(module, "ArchiveError"):
        sys.exit(f"{path} does not hold the original walker (walk_tar without ArchiveError)")
    return module


def walker_pass(module, archive: Path, limit: int | None) -> tuple[int, int]:
    """(members, bytes) read with `module`'s open_stream/walk_tar."""
    members = total = 0
    with module.open_stream(archive) as stream:
        for _, _, data in module.walk_tar(stream):
            members += 1
            total += len(data)
            if limit is not None and members >= limit:
                break
    return members, total


def tarfile_pass(archive: Path, limit: int | None) -> tuple[int, int]:
    """(members, bytes) read with a bare tarfile stream loop."""
    members = total = 0
    with open(archive, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
        for info in tar:
            members += 1
            if info.isreg():
                total += len(tar.extractfile(info).read())
            if limit is not None and members >= limit:
                break
    return members, total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--old", type=Path, default=DEFAULT_OLD,
                        help="file holding the original walker module (skipped if missing)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (walker, tarfile[, old]) passes")
    parser.add_argument("--limit", type=int, default=None, help="read only the first N members")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if not args.archive.is_file():
        sys.exit(f"{args.archive} not found; give --archive")
    readers = {"walker": lambda: walker_pass(walker, args.archive, args.limit),
               "tarfile": lambda: tarfile_pass(args.archive, args.limit)}
    old = load_old(args.old)
    if old is not None:
        readers["old"] = lambda: walker_pass(old, args.archive, args.limit)
    elif not args.json:
        print(f"({args.old} not found: the original walker is not timed)")
    times: dict[str, list[float]] = {label: [] for label in readers}
    counts = {}
    for round_ in range(args.rounds):
        for label, run in readers.items():
            start = time.perf_counter()
            members, total = run()
            seconds = time.perf_counter() - start
            times[label].append(seconds)
            counts.setdefault(label, (members, total))
            if not args.json:
                print(f"round {round_ + 1} {label:8s}: {seconds:.3f} s  ({members} members, {total} bytes)",
                      flush=True)
    if len(set(counts.values())) > 1:
        sys.exit(f"the readers disagree (members, bytes): {counts}")
    medians = {label: statistics.median(values) for label, values in times.items()}
    ratios = {"tarfile/walker": medians["tarfile"] / medians["walker"]}
    if "old" in medians:
        ratios["walker/old"] = medians["walker"] / medians["old"]
        ratios["tarfile/old"] = medians["tarfile"] / medians["old"]
    members, total = counts["walker"]
    result = {"archive": str(args.archive), "members": members, "bytes": total, "limit": args.limit,
              "rounds": args.rounds, "seconds": times, "median_seconds": medians, "ratios": ratios,
              "tarfile_within_bar": ratios["tarfile/walker"] <= BAR}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        scope = f"first {args.limit} members" if args.limit else "all members"
        print(f"{args.archive.name}, {scope}, medians of {args.rounds}: "
              + ", ".join(f"{label} {value:.3f} s" for label, value in medians.items()))
        print("ratios: " + ", ".join(f"{label} = {value:.2f}" for label, value in ratios.items()))
        verdict = "within" if ratios["tarfile/walker"] <= BAR else "over"
        print(f"tarfile is {ratios['tarfile/walker']:.2f}x the walker's time: {verdict} the {BAR}x bar")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
