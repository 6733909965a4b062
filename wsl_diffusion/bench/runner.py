"""The benchmark harness: settings x methods x seeds, resumable, with a Markdown report.

A *cell* is one (setting, method, seed) of the catalogue in `settings`; it produces one record in
OUT/results.json (see `store`). On a second invocation a cell whose record has no error and the
same budget is skipped; crashed cells and cells whose budget changed (e.g. a larger `kimg`) are run
again, a diffusion run continuing from its checkpoint. Diffusion runs live in
OUT/runs/<setting>/<method>/seed<k>. After the last cell `report.write_report` turns the records
into OUT/report.md.

Several processes may share one OUT, each taking a shard of the (setting, seed) groups
(`shard=(i, n)`); `store.merge_record` keeps them from overwriting each other's cells. On two CPU
cores, two 1-thread shards took ~3.4 min per (setting, seed) group of the digits preset against
~4.0 min for one 2-thread process (digits-quick), i.e. ~1.2x sooner.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from label_models.corruption import CorruptionSpec, corrupt
from label_models.io import load_labels

from wsl_diffusion.bench import baselines
from wsl_diffusion.bench.report import write_report
from wsl_diffusion.bench.settings import (DIFFUSION_METHODS, PRESETS, REFINE_METHOD, check_setting,
                                          method_budget, methods_for_setting, setting_kind, setting_spec)
from wsl_diffusion.bench.store import is_finished, load_results, merge_record, record_key, results_lock
from wsl_diffusion.config import TrainConfig, kind_defaults
from wsl_diffusion.data.datasets import ArrayDataset, flat_features, targets_in_label_space
from wsl_diffusion.data.sources import load_dataset
from wsl_diffusion.model.network import PRESETS as MODEL_PRESETS
from wsl_diffusion.posterior import PosteriorConfig, nfe_per_image
from wsl_diffusion.run import CHECKPOINT_NAME, SUMMARY_NAME, load_config, load_run
from wsl_diffusion.training.loop import train
from wsl_diffusion.training.refine import REFINE_LABELS_NAME, refine_config, write_stage_two


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

    methods: a subset to run (None = all that apply and whose optional package is installed). A
    listed method is skipped for settings it
    does not apply to, but must apply to at least one of them. shard (i, n): keep the (setting,
    seed) groups whose position in run order is i modulo n, so n processes split the plan with
    one diffusion pair per group each.
    """
    i_shard, n_shard = shard
    if not (isinstance(n_shard, int) and isinstance(i_shard, int) and n_shard >= 1 and 0 <= i_shard < n_shard):
        raise ValueError(f"`shard` must be (i, n) with 0 <= i < n, got {i_shard}/{n_shard}")
    if not settings:
        raise ValueError("no settings selected")
    for name in settings:
        check_setting(name)
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
    missing = {name for name, b in baselines.REGISTRY.items() if not b.installed}
    for name in settings:
        chosen = ([m for m in applicable[name] if m not in missing] if methods is None
                  else [m for m in applicable[name] if m in methods])
        for seed in seeds:
            if group % n_shard == i_shard:
                cells.extend(Cell(name, m, int(seed)) for m in chosen)
            group += 1
    return cells


def run_diffusion_cell(method: str, *, spec: CorruptionSpec, labels, train_data: ArrayDataset,
                       test_data: ArrayDataset, run_dir: Path, dataset: str, model: str, kimg: float,
                       seed: int, overrides: dict | None = None, progress: bool = False, console=None) -> dict:
    """Train (or continue) one diffusion run and score its test split with the diffusion classifier.

    The training seed is `seed`; the labels were corrupted with the same seed. A run directory
    holding a checkpoint is continued (or only re-evaluated when already finished) — unless it
    trained for longer than `kimg`, which would mislabel its budget.
    -> {"accuracy", "train_seconds", "nfe_per_image", "temperature", "resumed"}.
    """
    config = TrainConfig(dataset=dataset, supervision=spec.to_dict(), method=method, model=model,
                         total_kimg=kimg, seed=seed,
                         **{**kind_defaults(spec.supervision), **(overrides or {})})
    run_dir = Path(run_dir)
    resume = (run_dir / CHECKPOINT_NAME).is_file()
    if resume:
        done = load_config(run_dir).total_kimg  # what it was asked for (its steps round it up)
        if done > kimg * 1.0001 + 1e-9:
            raise ValueError(f"{run_dir} already trained for {done:g} kimg > {kimg:g}; use another `out`")
    summary = train(config, run_dir, train_data=train_data, labels=labels, test_data=test_data,
                    test_targets=targets_in_label_space(labels, test_data.targets), resume=resume,
                    progress=progress, console=console)
    return diffusion_record(summary, config, labels, run_dir=run_dir, resumed=resume)


def run_refine_cell(*, spec: CorruptionSpec, labels, train_data: ArrayDataset, test_data: ArrayDataset,
                    stage1: Path, run_dir: Path, dataset: str, model: str, kimg: float, seed: int,
                    overrides: dict | None = None, progress: bool = False, console=None) -> dict:
    """Two stages for noisy labels: the "dmis" cell's run in `stage1` (trained or continued here
    when it has not finished `kimg`), then a second stage in `run_dir` on the labels its model
    agrees with (`training.refine`), `kimg` long. -> the record of `run_diffusion_cell`, its
    train_seconds being the second stage's."""
    stage1, run_dir = Path(stage1), Path(run_dir)
    labels_file = run_dir / REFINE_LABELS_NAME
    resume = (run_dir / CHECKPOINT_NAME).is_file()
    summary = json.loads((stage1 / SUMMARY_NAME).read_text()) if (stage1 / SUMMARY_NAME).is_file() else {}
    if not (summary.get("finished") and load_config(stage1).total_kimg == kimg):
        if resume:  # its labels came from a stage 1 of another length
            raise ValueError(f"{run_dir} was refined from {stage1} before it trained {kimg:g} kimg; remove "
                             f"{run_dir} to refine the longer run")
        run_diffusion_cell("dmis", spec=spec, labels=labels, train_data=train_data, test_data=test_data,
                           run_dir=stage1, dataset=dataset, model=model, kimg=kimg, seed=seed, overrides=overrides,
                           progress=progress, console=console)
    if resume:
        refined = load_labels(labels_file)
        config = refine_config(load_config(stage1), labels_file, total_kimg=kimg)
    else:
        refined, config, _ = write_stage_two(load_run(stage1), run_dir, total_kimg=kimg, images=train_data.images)
    summary = train(config, run_dir, train_data=train_data, labels=refined, test_data=test_data,
                    test_targets=targets_in_label_space(refined, test_data.targets), resume=resume,
                    progress=progress, console=console)
    return diffusion_record(summary, config, refined, run_dir=run_dir, resumed=resume)


def diffusion_record(summary: dict, config: TrainConfig, labels, *, run_dir: Path, resumed: bool) -> dict:
    """A diffusion cell's record from its run's summary; RuntimeError (the cell's recorded error)
    for a run that stopped before its end."""
    if summary.get("test_accuracy_ema") is None:
        raise RuntimeError(f"training in {run_dir} stopped before its end; no test accuracy")
    # The test posterior's cost: the table's schedule at `INFERENCE_DRAWS` draws per level (older
    # summaries: the table's own schedule, one draw).
    tested = summary.get("test_posterior") or summary.get("posterior")
    record = {"accuracy": float(summary["test_accuracy_ema"]), "train_seconds": float(summary["seconds_this_call"]),
              "nfe_per_image": nfe_per_image(PosteriorConfig(**tested) if tested else config.posterior,
                                             labels.num_classes),
              "temperature": float(summary.get("temperature", 1.0)), "resumed": resumed}
    if summary.get("test_accuracy_ema_one_draw") is not None:
        record["accuracy_one_draw"] = float(summary["test_accuracy_ema_one_draw"])
    return record


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Progress:
    """Cell i/n, setting, method, seed on a rich progress bar (silent when disabled)."""

    def __init__(self, total: int, *, enabled: bool, console=None):
        self.enabled = enabled and total > 0
        if not self.enabled:
            return
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
    saved. Baselines are looked up in `baselines.REGISTRY` as each cell runs.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    seeds = list(p.seeds if seeds is None else seeds)
    settings = list(p.settings if settings is None else settings)
    kimg = p.kimg if kimg is None else float(kimg)
    if not (math.isfinite(kimg) and kimg > 0):
        raise ValueError(f"`kimg` must be a positive number, got {kimg}")
    model = p.model if model is None else model
    if model not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {model!r}; choose one of {', '.join(MODEL_PRESETS)}")
    cells = plan_cells(settings=settings, seeds=seeds, methods=methods, shard=shard)

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out` {out} exists and is not a directory")
    records = load_results(out)
    out.mkdir(parents=True, exist_ok=True)
    by_key = {record_key(r): i for i, r in enumerate(records)}
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
                if cell.method == REFINE_METHOD:
                    run_dir = out / "runs" / cell.setting / cell.method / f"seed{cell.seed}"
                    result = run_refine_cell(spec=setting_spec(cell.setting, cell.seed), labels=labels,
                                             train_data=train_data, test_data=test_data,
                                             stage1=out / "runs" / cell.setting / "dmis" / f"seed{cell.seed}",
                                             run_dir=run_dir, dataset=p.dataset, model=model, kimg=kimg,
                                             seed=cell.seed, overrides=diffusion_overrides)
                    result["run_dir"] = run_dir.relative_to(out).as_posix()
                elif cell.method in DIFFUSION_METHODS:
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
            by_key = {record_key(r): i for i, r in enumerate(records)}
    finally:
        bar.close(len(cells))
        with results_lock(out):  # also after an interruption: what finished so far, all shards
            records = load_results(out)
            write_report(out, records, meta=meta)
    return records
