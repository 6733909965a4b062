"""Benchmark records -> accuracy tables: aggregation over seeds and the Markdown report.

`render_report` writes a summary table (one row per setting, one column per method, best mean in
bold), DMIS (the two-stage noisy-label recipe where it ran) against the best baseline of each
family, by difference of means and paired by seed, then one table per setting with every
method's mean ± sample std, n, budget, NFE per image and training time. `method_table` and
`samples_link` are the pieces the demo's report reuses.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsl_diffusion.bench import baselines
from wsl_diffusion.bench.settings import DIFFUSION_METHODS, REFINE_METHOD, SETTINGS, describe_setting, setting_kind
from wsl_diffusion.bench.store import load_meta, load_results
from wsl_diffusion.run import atomic_write_text

REPORT_NAME = "report.md"


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
    seeds: list[int | None] = field(default_factory=list)  # one per value

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
        agg.seeds.append(r.get("seed"))
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


def family_of(method: str) -> str:
    """"diffusion", or a baseline's family ("sklearn", "neural"); "other" for unknown names."""
    if method in DIFFUSION_METHODS:
        return "diffusion"
    baseline = baselines.REGISTRY.get(method)
    return baseline.family if baseline else "other"


def _best_of(row: dict[str, Aggregate], family: str) -> Aggregate | None:
    found = [a for m, a in row.items() if a.values and family_of(m) == family]
    return max(found, key=lambda a: a.mean) if found else None


def paired_difference(a: Aggregate, b: Aggregate) -> tuple[float, float, int] | None:
    """(mean, standard error, n) of a - b over the seeds both finished, paired by seed (one seed is
    one label draw that both methods saw); None with fewer than two shared seeds."""
    va, vb = dict(zip(a.seeds, a.values)), dict(zip(b.seeds, b.values))
    shared = [s for s in va if s is not None and s in vb]
    if len(shared) < 2:
        return None
    d = np.array([va[s] - vb[s] for s in shared])
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d)


def recipe_of(row: dict[str, Aggregate]) -> Aggregate | None:
    """The DMIS cell a setting is judged by: the two-stage recipe (`dmis-refine`) where it ran,
    else one-stage `dmis`; None when neither finished a seed."""
    for method in (REFINE_METHOD, "dmis"):
        agg = row.get(method)
        if agg is not None and agg.values:
            return agg
    return None


def _gap(dmis: Aggregate, other: Aggregate) -> str:
    paired = paired_difference(dmis, other)
    text = f"{dmis.mean - other.mean:+.2f}"
    return text if paired is None else f"{text} (paired {paired[0]:+.2f} ± {paired[1]:.2f})"


def comparison_lines(table: dict[str, dict[str, Aggregate]]) -> list[str]:
    """DMIS (the two-stage recipe where it ran) against the best baseline of each family, and
    against DMIS on clean labels."""
    clean = table.get("clean", {}).get("dmis")
    clean_mean = clean.mean if clean and clean.values else None
    rows = []
    for setting, row in table.items():
        dmis = recipe_of(row)
        if dmis is None:
            continue
        cells = [setting, dmis.text() + (f" ({dmis.method})" if dmis.method != "dmis" else "")]
        for family in ("sklearn", "neural"):
            best = _best_of(row, family)
            cells += ([f"{best.method} {best.text()}", _gap(dmis, best)] if best else ["", ""])
        # PU accuracy is binary (positive vs negative): not comparable with the 10-class clean row.
        comparable = setting != "clean" and (setting not in SETTINGS or setting_kind(setting) != "pu")
        cells.append(f"{dmis.mean - clean_mean:+.2f}" if clean_mean is not None and comparable else "")
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["## DMIS against the baselines", "",
            "Differences of means in points; positive = DMIS ahead; with two or more shared seeds, also "
            "paired by seed (mean ± standard error of the per-seed differences: each seed is one label "
            "draw that both methods saw). DMIS is the two-stage noisy-label recipe (dmis-refine) where it "
            "ran. The last column compares with DMIS trained on clean labels (the `clean` row), the "
            "ceiling of the method at this budget (not for PU, whose accuracy is binary).", "",
            "| setting | DMIS | best scikit-learn | DMIS − it | best neural | DMIS − it | DMIS − DMIS clean |",
            "|---|---:|---|---:|---|---:|---:|", *rows, ""]


def samples_link(out: Path, row: dict[str, Aggregate]) -> str | None:
    """Path relative to `out` of the first existing DMIS (else vanilla) samples.png of a setting."""
    for method in ("dmis", "vanilla"):
        agg = row.get(method)
        for run_dir in (agg.run_dirs if agg else []):
            if (Path(out) / run_dir / "samples.png").is_file():
                return f"{run_dir}/samples.png"
    return None


def method_table(row: dict[str, Aggregate]) -> list[str]:
    """Markdown lines of one setting's table: method, accuracy (best in bold), n, budget, NFE/img,
    train s; then the failed cells, if any."""
    lines = ["| method | accuracy % | n | budget | NFE/img | train s |", "|---|---:|---:|---|---:|---:|"]
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
    return lines


def _summary_lines(table: dict[str, dict[str, Aggregate]]) -> list[str]:
    if not table:
        return []
    methods: list[str] = []
    for row in table.values():
        methods.extend(m for m in row if m not in methods)
    lines = ["## Summary", "", "| setting | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
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
    return [*lines, ""]


PLOTS_DIR = "plots"
T_SETTINGS = ("sym-40", "asym-40", "instance-40")  # where the report shows the estimated T


def write_plots(out: Path, records: list[dict]) -> None:
    """OUT/plots/accuracy.png (vanilla, DMIS, two-stage DMIS where it ran and the best baseline of
    each family per setting, ± std) and OUT/plots/T-<setting>.png (a DMIS run's final estimated T
    beside the true one) for the noisy settings whose runs are there. Each run's own curves.png
    is written by `train`."""
    from label_models.io import load_labels

    from wsl_diffusion.eval.plots import accuracy_bars, transition_heatmaps
    from wsl_diffusion.run import CHECKPOINT_NAME, LABELS_NAME, load_checkpoint

    table = aggregate(records)
    rows = []
    for setting, row in table.items():
        picks = [("vanilla", row.get("vanilla")), ("DMIS", row.get("dmis")),
                 ("DMIS, two stages", row.get(REFINE_METHOD))]
        picks += [(f"best {family}", _best_of(row, family)) for family in ("sklearn", "neural")]
        rows += [(setting, name, agg.mean, agg.std) for name, agg in picks if agg is not None and agg.values]
    if rows:
        accuracy_bars(rows, Path(out) / PLOTS_DIR / "accuracy.png", title="test accuracy, mean ± std over seeds")
    for setting in T_SETTINGS:
        agg = table.get(setting, {}).get("dmis")
        for run_dir in (agg.run_dirs if agg else [])[:1]:
            run = Path(out) / run_dir
            if not (run / CHECKPOINT_NAME).is_file():
                continue
            t = load_checkpoint(run / CHECKPOINT_NAME).get("transition")
            labels = load_labels(run / LABELS_NAME)
            if t is not None and t.numel():
                transition_heatmaps(t.double().numpy(), labels.transition_matrix, Path(out) / PLOTS_DIR / f"T-{setting}.png",
                                    title=f"{setting}, {run_dir}")


def _picture_lines(out: Path, table: dict[str, dict[str, Aggregate]]) -> list[str]:
    """Markdown image links for the plots that exist under OUT."""
    lines = []
    if (Path(out) / PLOTS_DIR / "accuracy.png").is_file():
        lines += ["## Pictures", "", f"![accuracy per setting]({PLOTS_DIR}/accuracy.png)", ""]
    for setting in T_SETTINGS:
        if (Path(out) / PLOTS_DIR / f"T-{setting}.png").is_file():
            lines += [f"Estimated against true T, {setting}:", "", f"![T {setting}]({PLOTS_DIR}/T-{setting}.png)", ""]
    return lines


def curves_link(out: Path, row: dict[str, Aggregate]) -> str | None:
    """The first DMIS run's curves.png of a setting (losses and the E-step table over kimg)."""
    agg = row.get("dmis")
    for run_dir in (agg.run_dirs if agg else []):
        if (Path(out) / run_dir / "curves.png").is_file():
            return f"{run_dir}/curves.png"
    return None


def render_report(out: Path, records: list[dict], *, meta: dict) -> str:
    """The Markdown text of report.md. out: where run directories (sample grids) are looked up."""
    table = aggregate(records)
    lines = [f"# Benchmark: preset `{meta.get('preset')}` on {meta.get('dataset')}", "",
             "Test accuracy (%) as mean ± sample std over seeds; n = seeds that finished; the best mean "
             "per setting in **bold**. Budget: the training each method got (diffusion: kimg and "
             "model size). NFE/img: network evaluations per test image of the diffusion classifier.", ""]
    lines += _summary_lines(table)
    lines += comparison_lines(table)
    lines += _picture_lines(out, table)
    for setting, row in table.items():
        title = describe_setting(setting) if setting in SETTINGS else setting
        lines += [f"## {setting}", "", f"{title}.", ""]
        grid = samples_link(out, row)
        if grid:
            lines += [f"Samples of the diffusion model: [{grid}]({grid})", ""]
        curves = curves_link(out, row)
        if curves:
            lines += ["Training of DMIS (losses, labels moved and true-class rate per E-step):", "",
                      f"![curves {setting}]({curves})", ""]
        lines += [*method_table(row), ""]
    return "\n".join(lines)


def write_report(out: str | Path, records: list[dict] | None = None, *, meta: dict | None = None) -> Path:
    """Write OUT/report.md from the records (default: OUT/results.json's). -> its path."""
    out = Path(out)
    records = load_results(out) if records is None else records
    meta = load_meta(out) if meta is None else meta
    path = out / REPORT_NAME
    write_plots(out, records)
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
