"""The benchmark's catalogue: named settings, presets, which methods apply, and their budgets.

A *setting* is a named `CorruptionSpec` whose seed is the benchmark seed; a *method* is "vanilla"
or "dmis" (a diffusion model trained with `training.train` and used as a Bayes classifier),
"dmis-refine" (noisy labels: DMIS, then a second DMIS stage on the labels it agrees with) or a
baseline of `baselines.REGISTRY` that applies to the setting's supervision kind. A method's
*budget* is a printable description of the training it gets; a finished result is current only
while its budget is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from label_models.corruption import CorruptionSpec

from wsl_diffusion.bench import baselines

DIFFUSION_METHODS: tuple[str, ...] = ("vanilla", "dmis", "dmis-refine")
# Two stages for noisy labels: the "dmis" cell's run, then `wsl-diff refine` on it
# (`training.refine`), the README's noisy-label recipe since it was adopted on the validation split
# (benchmarks/results/digits/select/refine_agreement.md). It runs by default in every noisy setting;
# it costs a second training run per cell.
REFINE_METHOD = "dmis-refine"

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
    """What a benchmark preset selects: dataset, settings, default seeds and the diffusion budget."""

    name: str
    dataset: str
    settings: tuple[str, ...]
    seeds: tuple[int, ...]
    model: str
    kimg: float


PRESETS: dict[str, Preset] = {
    # 12 settings x 3 seeds = 36 (vanilla, DMIS) pairs. At 128 kimg a pair costs ~4.5 min on 2 CPU
    # cores (vanilla ~1.3 min, DMIS ~3.2 min) plus ~0.5 min of baselines: ~3 h measured before
    # dmis-refine joined the default plan; its 15 second stages (~3 min each, estimated from a
    # DMIS run of the same length) make it ~3 h 45 min. At 256 kimg it would take about twice that.
    "digits": Preset("digits", "digits", tuple(SETTINGS), (0, 1, 2), model="small", kimg=128.0),
    # One seed, three settings: ~15 minutes on 2 CPU cores measured, ~18 with the sym-40 second stage.
    "digits-quick": Preset("digits-quick", "digits", ("sym-40", "partial-0.3", "semi-10"), (0,),
                           model="small", kimg=128.0),
}


def check_setting(name: str) -> None:
    """ValueError unless `name` is a key of SETTINGS."""
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")


def setting_spec(name: str, seed: int) -> CorruptionSpec:
    """The CorruptionSpec of a named setting, corrupted with `seed`."""
    check_setting(name)
    return CorruptionSpec(**SETTINGS[name], seed=seed)


def setting_kind(name: str) -> str:
    """The supervision kind of a named setting ("clean", "noisy", "partial", "semi", "pu")."""
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
    """`describe_spec` of a named setting."""
    return describe_spec(setting_spec(name, 0))


def methods_for_setting(name: str) -> list[str]:
    """Every method that applies to a setting: the diffusion methods (the two-stage one for noisy
    labels only), then the baselines."""
    kind = setting_kind(name)
    diffusion = [m for m in DIFFUSION_METHODS if m != REFINE_METHOD or kind == "noisy"]
    return diffusion + list(baselines.methods_for(kind))


def diffusion_budget(kimg: float, model: str) -> str:
    """The budget of a diffusion method, e.g. '128 kimg, small'."""
    return f"{kimg:g} kimg, {model}"


def method_budget(method: str, *, kimg: float, model: str) -> str:
    """The budget of any method: diffusion ones from (kimg, model), baselines from the catalogue."""
    if method == REFINE_METHOD:
        return f"{kimg:g} + {diffusion_budget(kimg, model)}"
    if method in DIFFUSION_METHODS:
        return diffusion_budget(kimg, model)
    return baselines.REGISTRY[method].budget
