"""`wsl-diff refine`: the second noisy-label stage keeps exactly the labels the first model agrees
with, holds out the first stage's validation rows and scores them against the first stage's labels."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]

TINY = ["--subset", "20", "--model", "tiny", "--kimg", "0.32", "--batch-size", "32", "--num-sigmas", "3",
        "--samples-per-class", "0", "--threads", "1", "--quiet"]


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def stage_one(tmp_path_factory):
    """A 10-step noisy-label DMIS run on 200 digits with a 20% validation split."""
    out = tmp_path_factory.mktemp("refine") / "stage1"
    code = main(["train", "--supervision", "noisy", "--noise", "sym", "--rate", "0.4", "--validation", "0.2",
                 *TINY, "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def stage_two(stage_one):
    out = stage_one.parent / "stage2"
    assert main(["refine", str(stage_one), "--out", str(out), "--threads", "1", "--quiet"]) == 0
    return out


def test_stage_two_keeps_exactly_the_labels_the_first_model_names_and_holds_out_the_same_rows(stage_one, stage_two):
    from wsl_diffusion import DiffusionClassifier
    from wsl_diffusion.eval.validation import label_rows, validation_split
    from wsl_diffusion.run import load_run

    one, two = load_run(stage_one), load_run(stage_two)
    n = one.labels.num_samples
    val_one = validation_split(one.config, one.labels, n)
    val_two = validation_split(two.config, two.labels, n)
    assert len(val_one) == 40
    torch.testing.assert_close(val_two, val_one)  # pinned by the label file, not drawn from the semi strata
    fit = np.flatnonzero(label_rows(n, val_one).numpy())
    named = DiffusionClassifier.from_run(stage_one).predict(one.splits()[0].images[fit])
    z = np.asarray(one.labels.observed)
    expected = np.full(n, -1)
    expected[fit] = np.where(named == z[fit], z[fit], -1)
    assert 0 < (expected[fit] >= 0).mean() < 1  # both kinds of training row occur
    assert two.labels.kind == "semi"
    np.testing.assert_array_equal(two.labels.observed, expected)  # validation rows unlabelled
    np.testing.assert_array_equal(two.labels.true_labels, one.labels.true_labels)  # carried for diagnostics
    assert (two.config.seed, two.config.validation, two.config.total_kimg) == (
        one.config.seed, one.config.validation, one.config.total_kimg)
    assert two.config.topk == 2 and two.config.supervision is None


def test_stage_two_is_scored_against_the_first_stages_noisy_labels_under_its_t(stage_one, stage_two):
    """Known answer: the scoring view of stage 2's label file is stage 1's labels with stage 1's
    own likelihood, so stage 1's model scored through it gets stage 1's own validation numbers."""
    from wsl_diffusion.eval.validation import run_validation, scoring_labels
    from wsl_diffusion.run import CHECKPOINT_NAME, load_checkpoint, load_run, run_label_likelihood

    one, two = load_run(stage_one), load_run(stage_two)
    own = torch.as_tensor(run_label_likelihood(load_checkpoint(stage_one / CHECKPOINT_NAME), one.labels, one.config))
    labels, lik, shared = scoring_labels(two.labels, torch.ones_like(own), two.config)
    assert labels.kind == "noisy"
    np.testing.assert_array_equal(labels.observed, one.labels.observed)
    torch.testing.assert_close(lik, own)
    _, _, shared_one = scoring_labels(one.labels, own, one.config)
    np.testing.assert_allclose(shared, shared_one)

    v1, v2 = run_validation(stage_one), run_validation(stage_two)
    assert v1["rows"] == v2["rows"] == 40
    assert len(v2["row_log_lik_heldout_t"]) == len(v1["row_log_lik_heldout_t"]) == 40
    summary = json.loads((stage_two / "summary.json").read_text())
    assert summary["validation"]["log_lik_heldout_t"] == pytest.approx(v2["log_lik_heldout_t"])


def test_paired_trial_pairs_a_second_stage_with_its_first(stage_one, stage_two, tmp_path):
    """benchmarks/paired_trial.py scores stage 2 against stage 1 row by row; stage 2 has no T."""
    from wsl_diffusion.eval.validation import run_validation
    out = tmp_path / "paired.json"
    proc = subprocess.run([sys.executable, "benchmarks/paired_trial.py", "--cand", str(stage_two), "--default",
                           str(stage_one), "--settings", "sym-40", "--seeds", "0", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (record,) = json.loads(out.read_text())["records"]
    assert record["log_det_t_cand"] is None and record["log_det_t_default"] is not None
    assert set(record["gain"]) == {"held-out T", "shared T", "own T", "agreement"}
    # the same rows in both runs, so the mean per-row agreement gain is the difference of the two
    # models' agreement with the noisy labels (each row scores 0 or 1)
    v_one, v_two = run_validation(stage_one), run_validation(stage_two)
    assert record["gain"]["agreement"][0] == pytest.approx(v_two["agreement_shared"] - v_one["agreement_shared"])
    assert set(v_one["row_agreement_shared"]) <= {0, 1}


def test_refine_resumes_only_its_own_second_stage(stage_one, stage_two, tmp_path, capsys):
    code, _, err = run_cli(["refine", str(stage_one), "--out", str(stage_two), "--resume", "--kimg", "0.64",
                            "--threads", "1", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((stage_two / "summary.json").read_text())["steps"] == 20
    other = tmp_path / "other"
    other.mkdir()
    code, _, err = run_cli(["refine", str(other), "--out", str(stage_two), "--resume"], capsys)
    assert code == 2 and "is not a second stage of" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["refine", str(stage_one), "--out", str(other), "--resume"], capsys)
    assert code == 2 and "holds no second stage to resume" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["refine", str(stage_one), "--out", str(stage_two), "--resume", "--min-confidence", "0.5"],
                           capsys)
    assert code == 2 and "a resume keeps them" in err and len(err.strip().splitlines()) == 1


def test_a_min_confidence_keeps_the_agreeing_labels_the_model_gives_at_least_that_probability(stage_one, tmp_path,
                                                                                               capsys):
    from wsl_diffusion import DiffusionClassifier
    from wsl_diffusion.eval.validation import label_rows, validation_split
    from wsl_diffusion.run import load_run
    from wsl_diffusion.training.refine import refine_labels

    one = load_run(stage_one)
    n = one.labels.num_samples
    fit = np.flatnonzero(label_rows(n, validation_split(one.config, one.labels, n)).numpy())
    proba = DiffusionClassifier.from_run(stage_one).predict_proba(one.splits()[0].images[fit])
    z = np.asarray(one.labels.observed)[fit]
    agree, p_z = proba.argmax(1) == z, proba[np.arange(len(fit)), z]
    tau = float(np.median(p_z[agree]))  # a threshold that must drop some agreeing rows
    labels, report = refine_labels(one, min_confidence=tau)
    kept = np.asarray(labels.observed)[fit] >= 0
    np.testing.assert_array_equal(kept, agree & (p_z >= tau))
    assert 0 < kept.sum() < agree.sum()
    assert report["kept_share"] == pytest.approx(kept.mean())
    assert report["classes_without_labels"] == sorted(set(z.tolist()) - set(z[kept].tolist()))
    code, _, err = run_cli(["refine", str(stage_one), "--out", str(tmp_path / "x"), "--min-confidence", "1"], capsys)
    assert code == 2 and "--min-confidence must be in [0, 1)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    # a threshold above the most confident agreeing row of a class would leave stage 2 nothing to learn it from
    classes = z[agree]
    top = {c: p_z[agree][classes == c].max() for c in np.unique(classes)}
    weakest = min(top, key=top.get)
    with pytest.raises(ValueError, match=f"no label of class {weakest}.*lower --min-confidence"):
        refine_labels(one, min_confidence=float(np.nextafter(top[weakest], 1)))


@pytest.mark.parametrize("case,needle", [("partial", "refine is for noisy labels"),
                                         ("unfinished", "holds no finished training run"),
                                         ("missing", "does not exist"),
                                         ("taken", "already holds a run")])
def test_refine_refuses_what_it_cannot_refine_in_one_line(case, needle, tiny_run, stage_one, stage_two, tmp_path,
                                                         capsys):
    run = {"partial": tiny_run, "unfinished": tmp_path, "missing": tmp_path / "nothing", "taken": stage_one}[case]
    out = stage_two if case == "taken" else tmp_path / "out"
    code, _, err = run_cli(["refine", str(run), "--out", str(out), "--threads", "1"], capsys)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_stage_comparison_pairs_both_summaries_and_needs_a_validation_split(stage_one, stage_two, tmp_path):
    from cli.refine import stage_comparison

    one, two = (json.loads((d / "summary.json").read_text())["validation"] for d in (stage_one, stage_two))
    line = stage_comparison(stage_one, stage_two)
    assert f"{100 * one['agreement_shared']:.1f}% -> {100 * two['agreement_shared']:.1f}%" in line
    assert f"{one['log_lik_heldout_t']:.4f} -> {two['log_lik_heldout_t']:.4f}" in line
    assert f"the same {two['rows']} held-out rows" in line and two["rows"] == one["rows"] == 40
    without = tmp_path / "no-validation"
    without.mkdir()
    (without / "summary.json").write_text(json.dumps({"finished": True}))
    assert stage_comparison(without, stage_two) is None and stage_comparison(stage_one, tmp_path / "missing") is None
