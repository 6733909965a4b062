"""The plots are real PNGs of the expected layout, and reports link exactly the ones that exist."""
import json

import numpy as np
from PIL import Image

from wsl_diffusion.eval.plots import accuracy_bars, read_stats, training_curves, transition_heatmaps


def test_plots_are_pngs_with_one_panel_per_part(tmp_path):
    t = np.full((3, 3), 0.1) + 0.7 * np.eye(3)
    one = transition_heatmaps(t, None, tmp_path / "t1.png")
    three = transition_heatmaps(t, np.eye(3), tmp_path / "t3.png")
    w1, w3 = Image.open(one).size[0], Image.open(three).size[0]
    assert 2.5 < w3 / w1 < 3.5  # estimate, truth and difference side by side
    bars = accuracy_bars([("a", "x", 90.0, 1.0), ("a", "y", 80.0, 2.0), ("b", "x", 70.0, 0.0)], tmp_path / "b.png")
    assert Image.open(bars).format == "PNG"


def test_training_curves_read_steps_and_refreshes_and_skip_a_cut_line(tmp_path):
    stats = tmp_path / "stats.jsonl"
    lines = [json.dumps({"kimg": k, "step": k, "loss_gen": 1.0 / k}) for k in range(1, 5)]
    lines.append(json.dumps({"kimg": 2, "refresh": 1, "labels_moved": 0.5, "temperature": 1.0}))
    stats.write_text("\n".join(lines) + '\n{"kimg": 5, "st')
    steps, refreshes = read_stats(stats)
    assert len(steps) == 4 and len(refreshes) == 1
    with_table = Image.open(training_curves(stats, tmp_path / "c.png")).size[0]
    stats.write_text("\n".join(lines[:4]) + "\n")
    vanilla = Image.open(training_curves(stats, tmp_path / "v.png")).size[0]
    assert with_table > 1.5 * vanilla  # the E-step panel only when there were refreshes


def test_the_report_links_the_plots_it_wrote(tmp_path):
    from wsl_diffusion.bench.report import write_report

    records = [{"setting": "sym-40", "kind": "noisy", "method": m, "seed": s, "budget": "b", "accuracy": a}
               for m, a in (("dmis", 0.9), ("svc", 0.95), ("vanilla", 0.8)) for s in (0, 1)]
    text = write_report(tmp_path, records, meta={"preset": "digits", "dataset": "digits"}).read_text()
    assert "![accuracy per setting](plots/accuracy.png)" in text and (tmp_path / "plots" / "accuracy.png").is_file()
    assert "T-sym-40" not in text  # no run directory, so no T to draw


def test_the_accuracy_plot_has_a_two_stage_bar_only_where_dmis_refine_ran(tmp_path, monkeypatch):
    from wsl_diffusion.bench.report import write_plots
    from wsl_diffusion.eval import plots

    drawn = []
    monkeypatch.setattr(plots, "accuracy_bars", lambda rows, path, **kw: drawn.extend(rows))
    methods = {"sym-40": (("dmis", 0.9), ("dmis-refine", 0.96), ("vanilla", 0.8)),
               "partial-0.5": (("dmis", 0.97), ("vanilla", 0.3))}
    records = [{"setting": st, "method": m, "seed": s, "budget": "b", "accuracy": a}
               for st, pairs in methods.items() for m, a in pairs for s in (0, 1)]
    write_plots(tmp_path, records)
    bars = {(setting, name): mean for setting, name, mean, _ in drawn}
    assert bars[("sym-40", "DMIS, two stages")] == 96.0 and bars[("sym-40", "DMIS")] == 90.0
    assert ("partial-0.5", "DMIS, two stages") not in bars and bars[("partial-0.5", "DMIS")] == 97.0
