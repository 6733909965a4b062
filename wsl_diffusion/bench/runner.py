"""The benchmark harness: settings x methods x seeds, resumable, with a Markdown report.

A *setting* is a named `CorruptionSpec` (its seed is the benchmark seed); a *method* is "vanilla"
or "dmis" (a diffusion model trained with `training.train` and used as a Bayes classifier) or a
baseline from `baselines.REGISTRY` that applies to the setting's supervision kind. A *cell* is one
(setting, method, seed); it produces one record in OUT/results.json:

    {"setting", "kind", "method", "seed", "accuracy", "train_seconds", "budget",
     "nfe_per_image" (diffusion: network evaluations per test image, else null),
     "run_dir" (diffusion, relative to OUT), "error" (only when the cell crashed), ...extras}

results.json is rewritten atomically after every cell. On a second invocation a cell whose record
has no error and the same budget is skipped; crashed cells and cells whose budget changed (e.g. a
larger --kimg) are run again, a diffusion run continuing from its checkpoint. Diffusion runs live
in OUT/runs/<setting>/<method>/seed<k>. `write_report` turns the records into OUT/report.md.

Several processes may share one OUT, each taking a shard of the (setting, seed) groups
(`shard=(i, n)`, `--shard i/n`): a record is merged into results.json under an exclusive file lock
(POSIX `fcntl`), re-reading the file first, so no process overwrites another's cells. On two CPU
cores, two 1-thread shards took ~3.4 min per (setting, seed) group of the digits preset against
~4.0 min for one 2-thread process (digits-quick), i.e. ~1.2x sooner.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from label_models.corruption import CorruptionSpec, corrupt

from wsl_diffusion.bench import baselines
from wsl_diffusion.data.datasets import ArrayDataset, flat_features, load_dataset, targets_in_label_space
from wsl_diffusion.posterior import nfe_per_image

RESULTS_NAME = "results.json"
REPORT_NAME = "report.md"
RESULTS_FORMAT = 1
DIFFUSION_METHODS: tuple[str, ...] = ("vanilla", "dmis")

# Setting name -> CorruptionSpec fields (without the seed, which is the benchmark seed).
SETTINGS: dict[str, dict[str, Any]] = {
    "clean": {"supervision": "clean"},
    "sym-20": {"supervision": "noisy", "noise": "sym", "rate": 0.2},
    "sym-40": {"supervision": "noisy", "noise": "sym", "rate": 0.4},
    "sym-60": {"supervision": "noisy", "noise": "sym", "rate": 0.6},
    "asym-40": {"supervision": "noisy", "noise": "asym", "rate": 0.4},
    "instance-40": {"supervision": "noisy", "noise": "instance", "rate": 0.4},
    "partial-0.3": {"supervision": "partial", "q": 0.3},
    "partial-0.5": {"supervision": "partial", "q": 0.5},
    "partial-cd": {"supervision": "partial", "class_dependent": True},
    "semi-5": {"supervision": "semi", "labelled_fraction": 0.05},
    "semi-10": {"supervision": "semi", "labelled_fraction": 0.10},
    "pu-even": {"supervision": "pu", "positive_classes": (0, 2, 4, 6, 8), "labelled_fraction": 0.5},
}


@dataclass(frozen=True)
class Preset:
    """What `--preset` selects: dataset, settings, default seeds and the diffusion budget."""

    name: str
    dataset: str
    settings: tuple[str, ...]
    seeds: tuple[int, ...]
    model: str
    kimg: float


PRESETS: dict[str, Preset] = {
    # 12 settings x 3 seeds = 36 (vanilla, DMIS) pairs. At 128 kimg a pair costs ~4.5 min on 2 CPU
    # cores (vanilla ~1.3 min, DMIS ~3.2 min) plus ~0.5 min of baselines: ~3 h in all, inside the
    # 4 h budget; at the 256-kimg training default it would take ~6 h.
    "digits": Preset("digits", "digits", tuple(SETTINGS), (0, 1, 2), model="small", kimg=128.0),
    # One seed, three settings: ~15 minutes on 2 CPU cores.
    "digits-quick": Preset("digits-quick", "digits", ("sym-40", "partial-0.3", "semi-10"), (0,),
                           model="small", kimg=128.0),
}


def setting_spec(name: str, seed: int) -> CorruptionSpec:
    """The CorruptionSpec of a named setting, corrupted with `seed`."""
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")
    return CorruptionSpec(**SETTINGS[name], seed=seed)


def setting_kind(name: str) -> str:
    return setting_spec(name, 0).supervision


def describe_spec(spec: CorruptionSpec) -> str:
    """A short human description of a corruption, e.g. 'noisy labels, sym noise, rate 0.4'."""
    if spec.supervision == "noisy":
        return f"noisy labels, {spec.noise} noise, rate {spec.rate:g}"
    if spec.supervision == "partial":
        return ("partial labels, class-dependent 0.7/0.5/0.3" if spec.class_dependent
                else f"partial labels, q = {spec.q:g}")
    if spec.supervision == "semi":
        return f"semi-supervised, {100 * spec.labelled_fraction:g}% labelled per class"
    if spec.supervision == "pu":
        pos = ",".join(str(c) for c in spec.positive_classes)
        return f"positive-unlabelled, positives {{{pos}}}, {100 * spec.labelled_fraction:g}% of them labelled"
    return "clean labels"


def describe_setting(name: str) -> str:
    return describe_spec(setting_spec(name, 0))


def methods_for_setting(name: str) -> list[str]:
    """Every method that applies to a setting: the diffusion methods, then the baselines."""
    return list(DIFFUSION_METHODS) + list(baselines.methods_for(setting_kind(name)))


def diffusion_budget(kimg: float, model: str) -> str:
    return f"{kimg:g} kimg, {model}"


def method_budget(method: str, *, kimg: float, model: str) -> str:
    if method in DIFFUSION_METHODS:
        return diffusion_budget(kimg, model)
    return baselines.REGISTRY[method].budget


# ----------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class Cell:
    setting: str
    method: str
    seed: int

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.setting, self.method, self.seed)


def plan_cells(*, settings: Sequence[str], seeds: Sequence[int], methods: Sequence[str] | None = None,
               shard: tuple[int, int] = (0, 1)) -> list[Cell]:
    """All cells in run order (setting, then seed, then method); validates every name first.

    methods: a subset to run (None = all that apply). A listed method is skipped for settings it
    does not apply to, but must apply to at least one of them. shard (i, n): keep the (setting,
    seed) groups whose position in run order is i modulo n, so n processes split the plan with
    one diffusion pair per group each.
    """
    i_shard, n_shard = shard
    if not (isinstance(n_shard, int) and isinstance(i_shard, int) and n_shard >= 1 and 0 <= i_shard < n_shard):
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {i_shard}/{n_shard}")
    if not settings:
        raise ValueError("no settings selected")
    for name in settings:
        if name not in SETTINGS:
            raise ValueError(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")
    if len(set(settings)) != len(settings):
        raise ValueError(f"settings listed twice: {list(settings)}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds selected")
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be non-negative integers, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds listed twice: {seeds}")
    applicable = {name: methods_for_setting(name) for name in settings}
    if methods is not None:
        if not methods:
            raise ValueError("no methods selected")
        known = set(DIFFUSION_METHODS) | set(baselines.REGISTRY)
        unknown = [m for m in methods if m not in known]
        if unknown:
            choices = ", ".join([*DIFFUSION_METHODS, *baselines.REGISTRY])
            raise ValueError(f"unknown method(s) {unknown}; choose from {choices}")
        for m in methods:
            if not any(m in applicable[s] for s in settings):
                kinds = sorted({setting_kind(s) for s in settings})
                raise ValueError(f"method {m!r} applies to none of the selected settings (kinds: {', '.join(kinds)})")
    cells = []
    group = 0
    for name in settings:
        chosen = applicable[name] if methods is None else [m for m in applicable[name] if m in methods]
        for seed in seeds:
            if group % n_shard == i_shard:
                cells.extend(Cell(name, m, int(seed)) for m in chosen)
            group += 1
    return cells


# ----------------------------------------------------------------------------------------------
# Results file


def load_results(out: Path) -> list[dict]:
    """The records of OUT/results.json ([] when there is none)."""
    path = Path(out) / RESULTS_NAME
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        records = data["records"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a benchmark results file ({exc}); "
                         "move it away or pick another --out") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: 'records' must be a list")
    return records


def save_results(out: Path, records: list[dict], *, meta: dict) -> None:
    payload = {"format": RESULTS_FORMAT, **meta, "records": records}
    atomic_write_text(Path(out) / RESULTS_NAME, json.dumps(payload, indent=1, default=_json_default) + "\n")


@contextlib.contextmanager
def results_lock(out: Path):
    """Exclusive lock on OUT's results while a process reads, merges and rewrites them."""
    with open(Path(out) / ".results.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge_record(out: Path, record: dict, *, meta: dict) -> list[dict]:
    """Put `record` into OUT/results.json (replacing the same cell's) under the lock. -> all records.

    Re-reads the file first, so records written meanwhile by other shards are kept.
    """
    with results_lock(out):
        records = load_results(out)
        keys = [_record_key(r) for r in records]
        key = _record_key(record)
        if key in keys:
            records[keys.index(key)] = record
        else:
            records.append(record)
        save_results(out, records, meta=meta)
    return records


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def atomic_write_text(path: Path, text: str) -> None:
    # Imported here: .checkpoint pulls in torch, which `wsl-diff --help` should not pay for.
    from wsl_diffusion.run import atomic_write_text as write

    write(path, text)


def _record_key(record: dict) -> tuple[str, str, int]:
    return (record.get("setting"), record.get("method"), record.get("seed"))


def is_finished(record: dict | None, budget: str) -> bool:
    """A cell is done when it has a record without error, trained with the same budget."""
    return record is not None and "error" not in record and record.get("budget") == budget


# ----------------------------------------------------------------------------------------------
# Running cells


def run_diffusion_cell(method: str, *, spec: CorruptionSpec, labels, train_data: ArrayDataset,
                       test_data: ArrayDataset, run_dir: Path, dataset: str, model: str, kimg: float,
                       seed: int, overrides: dict | None = None, progress: bool = False, console=None) -> dict:
    """Train (or continue) one diffusion run and score its test split with the diffusion classifier.

    The training seed is `seed`; the labels were corrupted with the same seed. A run directory
    holding a checkpoint is continued (or only re-evaluated when already finished) — unless it
    trained for longer than `kimg`, which would mislabel its budget.
    """
    from wsl_diffusion.run import CHECKPOINT_NAME
    from wsl_diffusion.config import TrainConfig
    from wsl_diffusion.training.loop import train

    config = TrainConfig(dataset=dataset, supervision=spec.to_dict(), method=method, model=model,
                         total_kimg=kimg, seed=seed, **(overrides or {}))
    run_dir = Path(run_dir)
    resume = (run_dir / CHECKPOINT_NAME).is_file()
    summary_path = run_dir / "summary.json"
    if resume and summary_path.is_file():
        done = json.loads(summary_path.read_text()).get("kimg", 0.0)
        if done > kimg * 1.0001 + 1e-9:
            raise ValueError(f"{run_dir} already trained for {done:g} kimg > {kimg:g}; use another --out")
    summary = train(config, run_dir, train_data=train_data, labels=labels, test_data=test_data,
                    test_targets=targets_in_label_space(labels, test_data.targets), resume=resume,
                    progress=progress, console=console)
    if summary.get("test_accuracy_ema") is None:
        raise RuntimeError(f"training in {run_dir} stopped before its end; no test accuracy")
    return {"accuracy": float(summary["test_accuracy_ema"]), "train_seconds": float(summary["seconds_this_call"]),
            "nfe_per_image": nfe_per_image(config.posterior, labels.num_classes),
            "temperature": float(summary.get("temperature", 1.0)), "resumed": resume}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Progress:
    """Cell i/n, setting, method, seed on a rich progress bar (silent when disabled)."""

    def __init__(self, total: int, *, enabled: bool, console=None):
        self.enabled = enabled and total > 0
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]benchmark"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=console or Console(stderr=True))
        self.task = self.progress.add_task("", total=total)
        self.progress.start()

    def show(self, i: int, cell: Cell, note: str = "") -> None:
        if self.enabled:
            self.progress.update(self.task, completed=i,
                                 description=f"cell {i + 1}/{self.progress.tasks[0].total}: {cell.setting} · "
                                             f"{cell.method} · seed {cell.seed}{note}")

    def log(self, text: str) -> None:
        if self.enabled:
            self.progress.console.log(text)

    def close(self, completed: int) -> None:
        if self.enabled:
            self.progress.update(self.task, completed=completed, description="done")
            self.progress.stop()


def run_benchmark(out: str | Path, *, preset: str = "digits", seeds: Sequence[int] | None = None,
                  settings: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                  kimg: float | None = None, model: str | None = None,
                  data: tuple[ArrayDataset, ArrayDataset] | None = None,
                  diffusion_overrides: dict | None = None, shard: tuple[int, int] = (0, 1),
                  progress: bool = True, console=None) -> list[dict]:
    """Run every cell of the plan that is not finished yet, then write report.md. -> all records.

    preset: a key of PRESETS (dataset, default settings and seeds, model and kimg). seeds,
    settings, methods, kimg, model: override the preset. data: (train, test) splits to use instead
    of loading the preset's dataset (tests use small subsets). diffusion_overrides: extra
    TrainConfig fields for the diffusion runs (batch size, posterior, ...). shard (i, n): run only
    this process's share of the (setting, seed) groups (see `plan_cells`). A crashing cell is
    recorded with "error" and the run goes on; KeyboardInterrupt stops it with every finished cell
    saved.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    seeds = list(p.seeds if seeds is None else seeds)
    settings = list(p.settings if settings is None else settings)
    kimg = p.kimg if kimg is None else float(kimg)
    if not (math.isfinite(kimg) and kimg > 0):
        raise ValueError(f"--kimg must be a positive number, got {kimg}")
    model = p.model if model is None else model
    from wsl_diffusion.model.network import PRESETS as MODEL_PRESETS

    if model not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {model!r}; choose one of {', '.join(MODEL_PRESETS)}")
    cells = plan_cells(settings=settings, seeds=seeds, methods=methods, shard=shard)

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    records = load_results(out)
    out.mkdir(parents=True, exist_ok=True)
    by_key = {_record_key(r): i for i, r in enumerate(records)}
    meta = {"preset": preset, "dataset": p.dataset}
    train_data, test_data = data if data is not None else load_dataset(p.dataset)

    label_cache: dict[tuple[str, int], Any] = {}

    def labels_of(setting: str, seed: int):
        if (setting, seed) not in label_cache:
            spec = setting_spec(setting, seed)
            label_cache[(setting, seed)] = corrupt(train_data.targets, num_classes=train_data.num_classes, spec=spec,
                                                   features=flat_features(train_data), dataset_name=p.dataset)
        return label_cache[(setting, seed)]

    bar = _Progress(len(cells), enabled=progress, console=console)
    try:
        for i, cell in enumerate(cells):
            budget = method_budget(cell.method, kimg=kimg, model=model)
            previous = records[by_key[cell.key]] if cell.key in by_key else None
            if is_finished(previous, budget):
                bar.show(i, cell, " (done, skipped)")
                continue
            bar.show(i, cell)
            record = {"setting": cell.setting, "kind": setting_kind(cell.setting), "method": cell.method,
                      "seed": cell.seed, "budget": budget, "nfe_per_image": None}
            t0 = time.perf_counter()
            try:
                labels = labels_of(cell.setting, cell.seed)
                if cell.method in DIFFUSION_METHODS:
                    run_dir = out / "runs" / cell.setting / cell.method / f"seed{cell.seed}"
                    result = run_diffusion_cell(cell.method, spec=setting_spec(cell.setting, cell.seed), labels=labels,
                                                train_data=train_data, test_data=test_data, run_dir=run_dir,
                                                dataset=p.dataset, model=model, kimg=kimg, seed=cell.seed,
                                                overrides=diffusion_overrides)
                    result["run_dir"] = run_dir.relative_to(out).as_posix()
                else:
                    fn = baselines.methods_for(labels.kind)[cell.method]
                    result = dict(fn(train_data, labels, test_data, seed=cell.seed))
                if "accuracy" not in result or not math.isfinite(float(result["accuracy"])):
                    raise RuntimeError(f"method returned no finite accuracy: {result}")
                record.update(result)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one broken cell must not cost the others
                record["error"] = _one_line(exc)
                bar.log(f"[red]{cell.setting} · {cell.method} · seed {cell.seed} failed:[/red] {record['error']}")
            record["wall_seconds"] = time.perf_counter() - t0
            records = merge_record(out, record, meta=meta)
            by_key = {_record_key(r): i for i, r in enumerate(records)}
    finally:
        bar.close(len(cells))
        with results_lock(out):  # also after an interruption: what finished so far, all shards
            records = load_results(out)
            write_report(out, records, meta=meta)
    return records


# ----------------------------------------------------------------------------------------------
# Aggregation and report


@dataclass
class Aggregate:
    """Accuracies of one (setting, method) over seeds, in percent."""

    setting: str
    method: str
    values: list[float]
    budget: str
    nfe_per_image: int | None
    seconds: list[float]
    errors: list[tuple[int, str]]
    run_dirs: list[str]

    @property
    def train_seconds(self) -> float | None:
        """Mean training time over the finished seeds."""
        return float(np.mean(self.seconds)) if self.seconds else None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

    def text(self) -> str:
        if not self.values:
            return "failed"
        spread = f"{self.std:.2f}" if self.n > 1 else "–"
        return f"{self.mean:.2f} ± {spread}"


def aggregate(records: Iterable[dict]) -> dict[str, dict[str, Aggregate]]:
    """setting -> method -> Aggregate, in the order cells first appear in the records."""
    table: dict[str, dict[str, Aggregate]] = {}
    for r in records:
        setting, method = r.get("setting"), r.get("method")
        agg = table.setdefault(setting, {}).get(method)
        if agg is None:
            agg = Aggregate(setting, method, [], r.get("budget", ""), r.get("nfe_per_image"), [], [], [])
            table[setting][method] = agg
        if "error" in r:
            agg.errors.append((r.get("seed"), r["error"]))
            continue
        agg.values.append(100.0 * float(r["accuracy"]))
        agg.budget = r.get("budget", agg.budget)
        agg.nfe_per_image = r.get("nfe_per_image", agg.nfe_per_image)
        if r.get("train_seconds") is not None:
            agg.seconds.append(float(r["train_seconds"]))
        if r.get("run_dir"):
            agg.run_dirs.append(r["run_dir"])
    return table


def best_methods(row: dict[str, Aggregate]) -> set[str]:
    """The methods with the highest mean accuracy in a row (ties all count)."""
    means = {m: a.mean for m, a in row.items() if a.values}
    if not means:
        return set()
    top = max(means.values())
    return {m for m, v in means.items() if v >= top - 1e-9}


def _sample_grid(out: Path, row: dict[str, Aggregate]) -> str | None:
    """Relative path of the first existing DMIS (else vanilla) samples.png of a setting."""
    for method in ("dmis", "vanilla"):
        agg = row.get(method)
        for run_dir in (agg.run_dirs if agg else []):
            if (out / run_dir / "samples.png").is_file():
                return f"{run_dir}/samples.png"
    return None


def family_of(method: str) -> str:
    """"diffusion", or a baseline's family ("sklearn", "neural"); "other" for unknown names."""
    if method in DIFFUSION_METHODS:
        return "diffusion"
    baseline = baselines.REGISTRY.get(method)
    return baseline.family if baseline else "other"


def _best_of(row: dict[str, Aggregate], family: str) -> Aggregate | None:
    found = [a for m, a in row.items() if a.values and family_of(m) == family]
    return max(found, key=lambda a: a.mean) if found else None


def _comparison_lines(table: dict[str, dict[str, Aggregate]]) -> list[str]:
    """DMIS against the best baseline of each family, and against DMIS on clean labels."""
    clean = table.get("clean", {}).get("dmis")
    clean_mean = clean.mean if clean and clean.values else None
    rows = []
    for setting, row in table.items():
        dmis = row.get("dmis")
        if dmis is None or not dmis.values:
            continue
        cells = [setting, dmis.text()]
        for family in ("sklearn", "neural"):
            best = _best_of(row, family)
            cells += ([f"{best.method} {best.text()}", f"{dmis.mean - best.mean:+.2f}"] if best else ["", ""])
        # PU accuracy is binary (positive vs negative): not comparable with the 10-class clean row.
        comparable = setting != "clean" and (setting not in SETTINGS or setting_kind(setting) != "pu")
        cells.append(f"{dmis.mean - clean_mean:+.2f}" if clean_mean is not None and comparable else "")
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["## DMIS against the baselines", "",
            "Differences of means in points; positive = DMIS ahead. The last column compares with DMIS "
            "trained on clean labels (the `clean` row), the ceiling of the method at this budget (not "
            "for PU, whose accuracy is binary).", "",
            "| setting | DMIS | best scikit-learn | DMIS − it | best neural | DMIS − it | DMIS − DMIS clean |",
            "|---|---:|---|---:|---|---:|---:|", *rows, ""]


def render_report(out: Path, records: list[dict], *, meta: dict) -> str:
    """The Markdown text of report.md."""
    table = aggregate(records)
    lines = [f"# Benchmark: preset `{meta.get('preset')}` on {meta.get('dataset')}", "",
             "Test accuracy (%) as mean ± sample std over seeds; n = seeds that finished; the best mean "
             "per setting in **bold**. Budget: the training each method got (diffusion: kimg and "
             "model size). NFE/img: network evaluations per test image of the diffusion classifier.", ""]
    methods: list[str] = []
    for row in table.values():
        methods.extend(m for m in row if m not in methods)
    if table:
        lines += ["## Summary", "", "| setting | " + " | ".join(methods) + " |",
                  "|---|" + "---:|" * len(methods)]
        for setting, row in table.items():
            best = best_methods(row)
            cells = []
            for m in methods:
                agg = row.get(m)
                if agg is None:
                    cells.append("")
                    continue
                text = f"{agg.mean:.1f}" if agg.values else "failed"
                cells.append(f"**{text}**" if m in best else text)
            lines.append(f"| {setting} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _comparison_lines(table)
    for setting, row in table.items():
        title = describe_setting(setting) if setting in SETTINGS else setting
        lines += [f"## {setting}", "", f"{title}.", ""]
        grid = _sample_grid(out, row)
        if grid:
            lines += [f"Samples of the diffusion model: [{grid}]({grid})", ""]
        lines += ["| method | accuracy % | n | budget | NFE/img | train s |", "|---|---:|---:|---|---:|---:|"]
        best = best_methods(row)
        for method, agg in row.items():
            acc = agg.text()
            if method in best:
                acc = f"**{acc}**"
            nfe = "" if agg.nfe_per_image is None else str(agg.nfe_per_image)
            secs = "" if agg.train_seconds is None else f"{agg.train_seconds:.1f}"
            lines.append(f"| {method} | {acc} | {agg.n} | {agg.budget} | {nfe} | {secs} |")
        failures = [(m, seed, err) for m, agg in row.items() for seed, err in agg.errors]
        if failures:
            lines += ["", "Failed cells:", ""]
            lines += [f"- {m}, seed {seed}: {err}" for m, seed, err in failures]
        lines.append("")
    return "\n".join(lines)


def write_report(out: str | Path, records: list[dict] | None = None, *, meta: dict | None = None) -> Path:
    """Write OUT/report.md from the records (default: OUT/results.json). -> its path."""
    out = Path(out)
    if records is None or meta is None:
        path = out / RESULTS_NAME
        data = json.loads(path.read_text()) if path.is_file() else {"records": []}
        records = data.get("records", []) if records is None else records
        meta = meta or {k: data.get(k) for k in ("preset", "dataset")}
    path = out / REPORT_NAME
    atomic_write_text(path, render_report(out, records, meta=meta))
    return path


def summary_rows(records: list[dict]) -> list[dict]:
    """One row per setting for a console summary: diffusion methods and the best baseline."""
    rows = []
    for setting, row in aggregate(records).items():
        entry = {"setting": setting, "best": sorted(best_methods(row))}
        for m in DIFFUSION_METHODS:
            if m in row:
                entry[m] = row[m]
        others = {m: a for m, a in row.items() if m not in DIFFUSION_METHODS and a.values}
        if others:
            name = max(others, key=lambda m: others[m].mean)
            entry["best_baseline"] = others[name]
        rows.append(entry)
    return rows


# ----------------------------------------------------------------------------------------------
# The demo: one short end-to-end run


def run_demo(out: str | Path, *, spec: CorruptionSpec, kimg: float = 128.0, model: str = "small", seed: int = 0,
             dataset: str = "digits", data: tuple[ArrayDataset, ArrayDataset] | None = None,
             diffusion_overrides: dict | None = None, progress: bool = True, console=None) -> dict:
    """Corrupt the training labels, train DMIS and vanilla, classify the test split with each, run
    an SVC on pixels, and write OUT/report.md. -> {"rows": [...], "samples": path, "seconds": total}.

    Run directories: OUT/dmis and OUT/vanilla (continued if they hold a checkpoint).
    """
    if not (math.isfinite(kimg) and kimg > 0):
        raise ValueError(f"--kimg must be a positive number, got {kimg}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    t_start = time.perf_counter()
    train_data, test_data = data if data is not None else load_dataset(dataset)
    labels = corrupt(train_data.targets, num_classes=train_data.num_classes, spec=spec,
                     features=flat_features(train_data), dataset_name=dataset)
    rows = []
    for method in ("dmis", "vanilla"):
        if console is not None and progress:
            console.print(f"[bold]{method}[/bold]: training {kimg:g} kimg ({model}) -> {out / method}")
        res = run_diffusion_cell(method, spec=spec, labels=labels, train_data=train_data, test_data=test_data,
                                 run_dir=out / method, dataset=dataset, model=model, kimg=kimg, seed=seed,
                                 overrides=diffusion_overrides, progress=progress, console=console)
        rows.append({"method": method, "accuracy": res["accuracy"], "train_seconds": res["train_seconds"],
                     "budget": diffusion_budget(kimg, model), "nfe_per_image": res["nfe_per_image"]})
    svc = baselines.REGISTRY["svc"]
    res = svc.run(train_data, labels, test_data, seed=seed)
    rows.append({"method": "svc", "accuracy": res["accuracy"], "train_seconds": res["train_seconds"],
                 "budget": svc.budget, "nfe_per_image": None})
    samples = out / "dmis" / "samples.png"
    total = time.perf_counter() - t_start
    result = {"rows": rows, "samples": str(samples) if samples.is_file() else None, "seconds": total,
              "supervision": spec.to_dict()}
    lines = [f"# wsl-diff demo: {dataset}", "",
             f"Labels: {describe_spec(spec)} (corruption seed {spec.seed}); "
             f"{len(train_data)} training and {len(test_data)} test images; training seed {seed}.", "",
             "| method | test accuracy % | budget | NFE/img | train s |", "|---|---:|---|---:|---:|"]
    for r in rows:
        nfe = "" if r["nfe_per_image"] is None else str(r["nfe_per_image"])
        lines.append(f"| {r['method']} | {100 * r['accuracy']:.2f} | {r['budget']} | {nfe} "
                     f"| {r['train_seconds']:.1f} |")
    lines.append("")
    if samples.is_file():
        lines += ["Samples of the DMIS model (one row per class): [dmis/samples.png](dmis/samples.png)", ""]
    lines += [f"Total wall time: {total:.0f} s.", ""]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / REPORT_NAME, "\n".join(lines))
    result["report"] = str(out / REPORT_NAME)
    return result
