"""The benchmark catalogue: settings, presets, applicable methods and budgets."""
from __future__ import annotations

import pytest

from label_models.corruption import corrupt
from label_models.labels import SUPERVISION_KINDS
from wsl_diffusion.bench import settings as S
from wsl_diffusion.data.datasets import flat_features


def test_every_setting_is_a_valid_corruption_of_digits(small_data):
    train, _ = small_data
    kinds = set()
    for name in S.SETTINGS:
        spec = S.setting_spec(name, seed=3)
        assert spec.seed == 3
        labels = corrupt(train.targets, num_classes=10, spec=spec, features=flat_features(train))
        kinds.add(labels.kind)
        assert S.describe_setting(name)
    assert kinds == set(SUPERVISION_KINDS)
    quick = S.PRESETS["digits-quick"]
    assert quick.seeds == (0,) and set(quick.settings) == {"sym-40", "partial-0.3", "semi-10"}
    assert S.PRESETS["digits"].seeds == (0, 1, 2)
    with pytest.raises(ValueError, match="unknown setting"):
        S.setting_spec("sym-99", 0)


def test_methods_and_budgets_of_a_setting():
    methods = S.methods_for_setting("partial-0.3")
    assert methods[:2] == ["vanilla", "dmis"] and {"svc_selftrain", "cnn_proden"} <= set(methods)
    assert "cnn_elr" not in methods
    assert S.method_budget("dmis", kimg=128.0, model="small") == "128 kimg, small"
    assert S.method_budget("cnn_ce", kimg=128.0, model="small") == "CNN 20 ep"  # unchanged: reruns compare it
    assert S.describe_setting("sym-40") == "noisy labels, sym noise, rate 0.4"
