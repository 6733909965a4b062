"""Shared CLI helpers: comma lists, thread counts, and library errors translated into flags."""
import argparse

import pytest

from cli.common import flag_for, parse_positive_ints, set_threads, translate_error
from cli.main import main
from wsl_diffusion.config import TrainConfig


def test_parse_positive_ints():
    assert parse_positive_ints("50,1,10,10", "--ipc") == [1, 10, 50]
    for bad in ("", "0", "1,x", "-3"):
        with pytest.raises(ValueError, match="--ipc"):
            parse_positive_ints(bad, "--ipc")


def test_set_threads_rejects_less_than_one():
    with pytest.raises(ValueError, match="--threads"):
        set_threads(0)


def test_library_errors_name_parameters_and_the_cli_names_flags():
    with pytest.raises(ValueError) as info:
        TrainConfig(total_kimg=0)
    message = str(info.value)
    assert "`total_kimg`" in message and "--" not in message  # the library speaks parameters
    assert translate_error(message).startswith("--kimg must be > 0")


def test_flag_for_prefers_the_parsers_own_option():
    parser = argparse.ArgumentParser()
    parser.add_argument("--label-seed", dest="corruption_seed")
    parser.add_argument("--ema-halflife-kimg", type=float)
    assert flag_for("ema_halflife_kimg", parser) == "--ema-halflife-kimg"
    assert flag_for("lambda_cls") == "--lambda-cls"
    assert translate_error("see `wsl-diff train` and `lr`") == "see `wsl-diff train` and --lr"


def test_a_bad_value_reaches_the_user_as_a_flag(capsys):
    code = main(["train", "--supervision", "noisy", "--kimg", "0", "--out", "unused-run-dir"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "wsl-diff train: error: --kimg must be > 0"


def test_model_names_match_the_network_presets_and_every_model_flag():
    from cli.common import MODEL_NAMES
    from cli.main import build_parser
    from wsl_diffusion.model.network import PRESETS

    assert MODEL_NAMES == tuple(PRESETS)
    parser = build_parser()
    for command in ("train", "benchmark", "demo"):
        sub = parser._subparsers._group_actions[0].choices[command]
        model = next(a for a in sub._actions if "--model" in a.option_strings)
        assert tuple(model.choices) == tuple(PRESETS), command
