"""--dataset takes paths (image folder, tarball, npz, CIFAR pickles) in `corrupt` and `train`, with
--subset and --on-bad-image; bad datasets are one stderr line and exit 2."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cli.main import build_parser, main
from label_models import load_labels

torch.set_num_threads(1)


def image_folder(root, classes=("a", "b", "c"), per_class=12):
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / "train" / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / "train" / cls / f"{i:02d}.png")
    return root


def test_corrupt_on_a_generated_folder(tmp_path, capsys):
    root = image_folder(tmp_path / "shapes")
    out = tmp_path / "x.npz"
    code = main(["corrupt", "--dataset", str(root), "--supervision", "noisy", "--rate", "0.2",
                 "--subset", "9", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)  # stdout stays one JSON object; the split note goes to stderr
    assert summary["num_samples"] == 3 * 9 and summary["num_classes"] == 3
    assert "no test split" in captured.err
    labels = load_labels(out)
    assert labels.meta["dataset"] == "shapes" and labels.num_samples == 27


@pytest.mark.parametrize("make, message", [
    (lambda r: (r / "train").mkdir(parents=True), "no class folders"),
    (lambda r: r.mkdir(), "neither a train/ folder"),
    (lambda r: None, "no such dataset"),
])
def test_bad_dataset_is_one_line_exit_2(tmp_path, capsys, make, message):
    root = tmp_path / "bad"
    make(root)
    code = main(["corrupt", "--dataset", str(root), "--supervision", "clean", "--out", str(tmp_path / "l.npz")])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and message in captured.err
    assert captured.err.startswith("wsl-diff corrupt: error:") and not (tmp_path / "l.npz").exists()


def test_subset_flag_is_validated(tmp_path, capsys):
    code = main(["corrupt", "--subset", "0", "--supervision", "clean", "--out", str(tmp_path / "l.npz")])
    assert code == 2 and "--subset takes a whole number" in capsys.readouterr().err


def test_asym_noise_on_a_folder_needs_a_class_map(tmp_path, capsys):
    root = image_folder(tmp_path / "shapes", classes=tuple("abcdefghij"), per_class=3)
    args = ["corrupt", "--dataset", str(root), "--supervision", "noisy", "--noise", "asym", "--rate", "0.2",
            "--out", str(tmp_path / "l.npz"), "--json"]
    assert main(args) == 2 and "no built-in asymmetric class map for dataset 'shapes'" in capsys.readouterr().err
    assert main([*args, "--class-map", "cifar10"]) == 0


def test_train_config_carries_dataset_flags(tmp_path, monkeypatch):
    from cli.train import build_config
    from wsl_diffusion.config import TrainConfig

    root = image_folder(tmp_path / "shapes")
    monkeypatch.chdir(tmp_path)
    args = build_parser({"train": "cli.train"}).parse_args(
        ["train", "--dataset", "shapes", "--subset", "4", "--on-bad-image", "skip", "--supervision", "clean",
         "--out", "run"])
    config = build_config(args)
    assert config.dataset == str(root.resolve()) and config.subset == 4 and config.on_bad_image == "skip"
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="`subset` must be"):
        TrainConfig(subset=0)
    with pytest.raises(ValueError, match="unknown `on_bad_image`"):
        TrainConfig(on_bad_image="ignore")


def test_the_classifier_interval_defaults_by_label_kind_and_a_given_one_wins(tmp_path):
    """Partial labels train on [0.2, 2.5] (chosen on a validation split), other kinds on [0.4, 5],
    a label file by the kind it holds, and --sigmas overrides either."""
    from cli.train import build_config
    from label_models.corruption import CorruptionSpec, corrupt
    from label_models.io import save_labels
    from wsl_diffusion.config import DEFAULT_INTERVAL, INTERVAL_BY_KIND
    from wsl_diffusion.data.datasets import load_digits_split

    def interval(*flags):
        args = build_parser({"train": "cli.train"}).parse_args(["train", *flags, "--out", str(tmp_path / "run")])
        posterior = build_config(args).posterior
        return posterior.sigma_lo, posterior.sigma_hi

    assert interval("--supervision", "partial") == INTERVAL_BY_KIND["partial"] == (0.2, 2.5)
    assert interval("--supervision", "noisy") == interval("--supervision", "semi") == DEFAULT_INTERVAL
    assert interval("--supervision", "partial", "--sigmas", "0.4,5") == DEFAULT_INTERVAL
    train, _ = load_digits_split()
    save_labels(tmp_path / "p.npz", corrupt(train.targets, num_classes=10, spec=CorruptionSpec(supervision="partial")))
    assert interval("--labels", str(tmp_path / "p.npz")) == (0.2, 2.5)


def test_classes_per_step_default_by_label_kind_and_a_given_one_wins(tmp_path):
    """Noisy labels keep 3 classes per sample (chosen on a validation split), other kinds 2, a
    label file by the kind it holds, and --topk overrides either; the benchmark and the estimator
    start from the same per-kind defaults."""
    from cli.train import build_config
    from label_models.corruption import CorruptionSpec, corrupt
    from label_models.io import save_labels
    from wsl_diffusion.config import DEFAULT_TOPK, TOPK_BY_KIND, kind_defaults
    from wsl_diffusion.data.datasets import load_digits_split

    def topk(*flags):
        args = build_parser({"train": "cli.train"}).parse_args(["train", *flags, "--out", str(tmp_path / "run")])
        return build_config(args).topk

    assert topk("--supervision", "noisy") == TOPK_BY_KIND["noisy"] == 3
    assert topk("--supervision", "partial") == topk("--supervision", "semi") == DEFAULT_TOPK == 2
    assert topk("--supervision", "noisy", "--topk", "2") == 2
    train, _ = load_digits_split()
    spec = CorruptionSpec(supervision="noisy", noise="sym", rate=0.4)
    save_labels(tmp_path / "n.npz", corrupt(train.targets, num_classes=10, spec=spec))
    assert topk("--labels", str(tmp_path / "n.npz")) == 3
    assert kind_defaults("noisy")["topk"] == 3 and kind_defaults("partial")["posterior"].sigma_hi == 2.5


def test_noisy_labels_unmix_the_table_by_default_and_the_flag_wins_either_way(tmp_path):
    """`table_unmix` is a per-kind default (on for noisy labels, the only kind with a transition to
    unmix); --table-unmix / --no-table-unmix override it, and the benchmark and the estimator
    start from the same `kind_defaults`."""
    from cli.train import build_config
    from wsl_diffusion.config import kind_defaults

    def unmix(*flags):
        args = build_parser({"train": "cli.train"}).parse_args(["train", *flags, "--out", str(tmp_path / "run")])
        return build_config(args).table_unmix

    assert unmix("--supervision", "noisy") is True
    assert unmix("--supervision", "partial") is False and unmix("--supervision", "semi") is False
    assert unmix("--supervision", "noisy", "--no-table-unmix") is False
    assert unmix("--supervision", "partial", "--table-unmix") is True
    assert kind_defaults("noisy")["table_unmix"] is True and kind_defaults("pu")["table_unmix"] is False


def test_the_e_step_options_of_noisy_labels_reach_the_config(tmp_path):
    """--disputed-uncond, --no-table-restrict-settled, --noisy-cls and --elr-lambda set their
    fields; without them the fields keep the defaults the README states."""
    from cli.train import build_config

    def config(*flags):
        args = build_parser({"train": "cli.train"}).parse_args(
            ["train", "--supervision", "noisy", *flags, "--out", str(tmp_path / "run")])
        return build_config(args)

    plain = config()
    assert plain.disputed_uncond is False and plain.table_restrict_settled is True
    assert config("--disputed-uncond").disputed_uncond is True
    assert config("--no-table-restrict-settled").table_restrict_settled is False
    assert plain.noisy_cls == "elr" and plain.elr_lambda == 1.0
    assert config("--noisy-cls", "table").noisy_cls == "table"
    assert config("--elr-lambda", "3").elr_lambda == 3.0
    with pytest.raises(ValueError, match="elr_lambda"):
        config("--elr-lambda", "-1")
