"""The training configuration: one dataclass, saved as JSON next to every run and in every checkpoint."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from wsl_diffusion._validate import check_numbers
from wsl_diffusion.model.network import PRESETS
from wsl_diffusion.posterior import PosteriorConfig

METHODS = ("dmis", "vanilla")
GEN_FORMS = ("em", "wdsm")
TRANSITIONS = ("estimate", "assumed", "oracle")
PU_PRIORS = ("estimate", "oracle")  # or the share of positives itself, a number in (0, 1)
NOISY_CLS = ("elr", "forward", "table")
NOISY_PRIORS = ("transition", "observed")
TRANSITION_MSTEPS = ("em", "posterior")
TIE_BREAKS = ("random", "index")
TABLE_PRUNED = ("zero", "coarse")
POSTERIOR_FITS = ("refit", "prune", "fixed")
CLS_LOGITS = ("elbo", "table")
PRECISIONS = ("fp32", "bf16")
# TrainConfig fields that take one of a few names -> those names.
CHOICE_FIELDS: dict[str, tuple[str, ...]] = {
    "method": METHODS, "gen_form": GEN_FORMS, "model": tuple(PRESETS), "cls_logits": CLS_LOGITS,
    "on_bad_image": ("raise", "skip"), "transition": TRANSITIONS, "transition_mstep": TRANSITION_MSTEPS,
    "noisy_prior": NOISY_PRIORS, "noisy_cls": NOISY_CLS, "posterior_fit": POSTERIOR_FITS,
    "table_pruned": TABLE_PRUNED, "table_tie_break": TIE_BREAKS,
}
HOLDOUT_MAX_ROWS = 1000  # enough for the one number fitted on them; the rest train
# Labels whose label model singles out one class the E-step can move away from. A partial
# label's table never leaves its candidate set, nor a clean one-hot row its class, and PU and
# unlabelled rows have no single class to protect.
HOLDOUT_KINDS = ("noisy",)
LEGACY_EXECUTION_KEYS = frozenset({"device", "precision", "channels_last", "compile"})
# The classifier interval [sigma_lo, sigma_hi] of the posterior table, the classification loss and
# inference. Partial labels take [0.2, 2.5]: chosen on a validation split of the training images
# with their candidate sets (benchmarks/select_defaults.py; docs/choosing-defaults.md). The others
# keep the design's [0.4, 5], which validation did not beat.
DEFAULT_INTERVAL = (0.4, 5.0)
INTERVAL_BY_KIND = {"partial": (0.2, 2.5)}


def default_interval(kind: str | None) -> tuple[float, float]:
    """The default classifier interval for labels of this kind (None: the general one)."""
    return INTERVAL_BY_KIND.get(kind, DEFAULT_INTERVAL)


def default_posterior(kind: str | None = None) -> PosteriorConfig:
    """The training posterior's default schedule for labels of this kind: 6 levels on the kind's
    interval, class pruning to 3 after the 2 central levels."""
    lo, hi = default_interval(kind)
    return PosteriorConfig(schedule="interval", sigma_lo=lo, sigma_hi=hi, num_sigmas=6, keep_classes=3, prune_sigmas=2)


# Classes kept per sample in the EM step. Noisy labels take 3: on the validation split it beats
# k = 2 at asym-40 over 3 seeds and ties at sym-40 and instance-40 (docs/choosing-defaults.md);
# its step costs about 1.4x a k = 2 step (benchmarks/step_cost.py).
DEFAULT_TOPK = 2
TOPK_BY_KIND = {"noisy": 3}


def default_topk(kind: str | None) -> int:
    """The default number of classes kept per sample for labels of this kind."""
    return TOPK_BY_KIND.get(kind, DEFAULT_TOPK)


# Noisy labels unmix the network's posterior before each table (`TrainConfig.table_unmix`). The
# validation split ties it with the default in every noisy setting, so it was chosen by the
# minimum-volume rule written down before its confirmation runs (docs/choosing-defaults.md).
# The other kinds have no transition to unmix.
TABLE_UNMIX_BY_KIND = {"noisy": True}


def default_table_unmix(kind: str | None) -> bool:
    """Whether labels of this kind unmix the table's posterior by default."""
    return TABLE_UNMIX_BY_KIND.get(kind, False)


def kind_defaults(kind: str | None) -> dict:
    """The TrainConfig fields whose default depends on the kind of labels (noisy, partial, ...):
    every entry point that knows the kind (CLI, benchmark, estimator) starts from these."""
    return {"posterior": default_posterior(kind), "topk": default_topk(kind),
            "table_unmix": default_table_unmix(kind)}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Durations are in thousands of images (kimg), as
    in EDM, so runs compare across batch sizes and process counts.

    dataset: "digits" or a path `wsl_diffusion.data.sources.load_source` reads (image folder, tarball,
      .npz, CIFAR-10 pickles); subset caps the images per class in each split; on_bad_image says
      whether an unreadable image file stops the run ("raise") or is left out ("skip").
    supervision: the `label_models.CorruptionSpec` fields as a dict (how labels were corrupted),
      or None when `labels_file` gives the labels.
    gen_form: "em" (posterior weights outside the norm, from a table of clean-image posteriors
      refreshed on the E-step schedule below) or "wdsm" (the paper's weighted DSM with posteriors of
      the noised input from the EMA model at every step). See docs/measurements.md for the measurement.
    topk: classes kept per sample (the K-way forward costs topk network rows per image).
    lambda_cls: weight of the classification loss (0 switches it off).
    labelled_share: semi-supervised labels only: when fewer than this share of the examples are
      labelled, each batch draws this share from the labelled ones (the usual SSL sampler; both
      methods). 0 draws every example uniformly.
    posterior: the diffusion-classifier settings used for the table and for evaluation; its
      interval [sigma_lo, sigma_hi] is also where the classification loss is applied.
    posterior_fit: "refit" fits the schedule's interval, its number of levels (up to
      `posterior.num_sigmas`) and its class pruning at refreshes 1, 2, 4, 8, ... to the run's model
      and imprecise labels (`wsl_diffusion.schedule_fit`); `posterior` is then only where it
      starts and the grid it searches ([sigma_min, sigma_max]). "prune" keeps the interval and
      fits only the class pruning (`keep_classes`). "fixed" keeps `posterior` as given.
    table_refresh_kimg / table_refresh_max_kimg / table_settle: the E-step schedule. The table is
      refreshed after `refresh_kimg(kind)` kimg; each refresh that moves fewer than
      `table_settle` of the restricted labels (argmax) doubles the interval, up to the max.
      Frequent early E-steps are what disambiguates labels (see docs/noisy-labels.md); a settled table needs
      few. max None keeps the interval fixed.
    table_settle_floor: settle against the table's Monte-Carlo noise too: each refresh of a
      trusted model draws the posterior twice more on up to `MC_FLOOR_ROWS` rows, and the table
      counts as settled once it moves no more labels than those two draws disagree on (or fewer
      than `table_settle`). One noise draw per level moves 2-6% of a trained digits model's labels by
      itself (docs/benchmark-digits.md), above the fixed 2%, so some runs never settle.
    table_tie_break: "random" orders classes of equal weight (a flat table, zero-weight classes)
      by a uniform draw of the step, so nothing depends on class index order; "index" is the old
      behaviour (lowest index first), kept for ablations.
    table_keep_label: also refine the one class a label singles out (a noisy label's z, a
      labelled row's class) when the table's class pruning would drop it (one more class on the
      fine levels). Off by default: on a trained sym-40
      model it lowered the table's true-class rate from 94.0% to 78.9%, because a pruned z is
      exactly the model rejecting the label, and scoring it in full lets T[z, z] pull it back.
    table_pruned: what the table holds for the classes its pruning pass dropped: "zero" (the
      fine posterior as it is) or "coarse" (their all-class posterior from the pruning levels,
      with the fine levels splitting the kept set's mass; see docs/noisy-labels.md).
    table_unmix: noisy labels: before each table, treat the network as a model of the labels it
      was trained on and unmix its posterior with their transition (anchor-point estimate on the
      all-class posterior; `label_models.transition.unmix_posterior`), for the table and the T
      M-step alike, from the refresh after the first one that moved fewer than `table_settle` of
      the labels (EM's fixed point, which unmixing exists to break; a young model's posterior is
      too flat for anchors). On for noisy labels through `kind_defaults` (docs/benchmark-digits.md, asym-40).
    table_restrict_settled: noisy labels: whether the E-step keeps restricting the training rows'
      posterior by p(z | y) once the table has settled. The network's posterior on a row it
      trained on already carries that row's label (the classification term is cross-entropy to z
      plus ELR, and the generator learned the image under its table class), so the restriction
      counts the label's evidence twice; with False the settled table is the model's posterior
      alone (after unmixing). True: the E-step as the paper writes it.
    disputed_uncond: noisy labels: from the first table on, a row whose table label (the
      posterior restricted by p(z | y)) is not the model's own best class (the unrestricted
      posterior) trains the generator unconditionally and skips the classification term, so a
      class model learns only from rows the label and the model agree on (sample selection by
      agreement, as co-teaching-style methods do). False: every row trains under its table classes.
    transition: where noisy labels' T comes from: "estimate" (Dawid-Skene EM at every refresh on
      the model's all-class posterior of the pruning pass, from symmetric noise at
      `assumed_noise_rate`; skipped while the model is uninformative), "assumed" (that symmetric T,
      fixed), or "oracle" (the T stored in the label file: for ablations; a real label file has
      none). transition_smoothing: the Dirichlet pseudo-count per row of the T estimate.
    transition_mstep: how `transition="estimate"` turns the model's posterior into T. "em":
      Dawid-Skene EM with the posterior held fixed (w ∝ p(y | x) T[y, z], then count), which is
      right for rows the network never trained on. "posterior": once the table has settled, one
      count of the table's posterior itself, T[y, z] ∝ sum_n p(y | x_n) [z_n = z]: on rows the
      network trained on, its posterior already carries z, and EM's restriction counts z again at
      every round, so its T comes out too close to the identity (docs/benchmark-digits.md). Before the table has
      settled both use EM (a young model's posterior is too flat to count). "posterior" is the
      default since 2026-12-07 (second trial on validation, select/heldout_t.md); configs saved
      before the field existed load as "em", what they ran.
    noisy_prior: DMIS with noisy labels: the clean class prior p(y) of the E-step, the
      classification term and the test posterior. "observed" (the default): the observed label
      frequencies, which over-weight the classes that noise flips labels into (asym-40 on digits:
      0.13-0.14 for the flip targets 1 and 8, 0.06 for their sources 2 and 3). "transition": the
      prior that those frequencies imply through the run's T (T^T p(y) = p(z),
      `prior_from_transition`), solved again at every T update; its estimated T had the larger
      volume at asym-40 in 3 of 3 seeds, so it is not the default (README,
      benchmarks/results/digits/select/noisy_prior.md).
    pu_prior: the share of positives among all images, for positive-unlabelled labels (the nnPU
      risk's class prior and the posterior's): "estimate" (from the images and which rows are
      labelled: a cross-fitted labelled-vs-unlabelled logistic regression on the pixels and the
      top-bin mixture-proportion estimator, `training.pu_prior.estimate_pu_prior`), a number in
      (0, 1) the user knows, or "oracle" (the prior stored in the label file, which `corrupt`
      computes from the true labels: for ablations; a real label file has none).
    noisy_cls: the classification loss for noisy labels: "elr" (ELR-rectified target),
      "forward" (forward correction, -log sum_y T[y, z] f_theta(y), with the run's T) or "table"
      (soft cross-entropy to the table restricted by p(z | y) over the kept classes: the target
      the generator trains on, as partial and semi-supervised labels do).
    elr_lambda: the weight of ELR's regulariser, lam * log(1 - <f_theta, table>), beside CE(z)
      (`noisy_cls="elr"`). 1.0 is the form this project started from; the ELR paper (and the
      `cnn_elr` baseline) use 3, which lost at asym-40 on the validation split
      (benchmarks/results/digits/select/elr_lambda.md).
    holdout: the safeguard of the E-step (DMIS with noisy labels). This share of the training
      images (at most `HOLDOUT_MAX_ROWS`) is never drawn into a batch. At each refresh the table
      is the model's posterior only if the model explains the held-out images' noisy labels
      better than the prior does (`label_evidence`, by two standard errors); else it is the
      prior, so the restricted table keeps every label. 0 turns the safeguard off.
    validation: this share of the training images (of the labelled and of the unlabelled ones, so a
      semi-supervised or PU run keeps its labelled share) is never trained on and no fitted quantity reads their
      labels (table tau, T, class prior, schedule fits). The run scores its model on their
      imprecise labels at every refresh and at the end (`validation_scores`), so hyperparameters
      can be chosen without the test split. Both methods, every label kind; 0 = off (the default).
    """

    dataset: str = "digits"
    subset: int | None = None
    on_bad_image: str = "raise"
    labels_file: str | None = None
    supervision: dict | None = None
    method: str = "dmis"
    gen_form: str = "em"
    topk: int = DEFAULT_TOPK  # its kind's: `default_topk(kind)`
    lambda_cls: float = 1.0
    cls_logits: str = "elbo"  # "elbo": one-sigma logits in nats (tau = 1); "table": divided by the table tau
    label_dropout: float = 0.1
    labelled_share: float = 0.5
    model: str = "small"
    batch_size: int = 128
    total_kimg: float = 256.0
    lr: float = 1e-3
    lr_rampup_kimg: float = 6.4
    ema_halflife_kimg: float = 10.0
    ema_rampup_ratio: float = 0.05
    grad_clip: float = 1.0
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 0.5
    posterior: PosteriorConfig = field(default_factory=default_posterior)  # its kind's: `default_posterior(kind)`
    posterior_fit: str = "fixed"
    table_refresh_kimg: float | None = None  # first refresh interval; None: refresh_kimg(kind)
    table_refresh_max_kimg: float | None = 32.0  # the interval doubles up to this (None: never grows)
    table_settle: float = 0.02  # ... each time fewer than this share of the table's labels moved
    table_settle_floor: bool = False
    table_tie_break: str = "random"
    table_keep_label: bool = False
    table_pruned: str = "zero"
    table_unmix: bool = False  # its kind's: `default_table_unmix(kind)`
    table_restrict_settled: bool = True
    disputed_uncond: bool = False
    calibrate_table: bool = True
    transition: str = "estimate"
    transition_smoothing: float = 1.0
    transition_mstep: str = "posterior"
    noisy_prior: str = "observed"
    pu_prior: float | str = "estimate"
    noisy_cls: str = "elr"
    elr_lambda: float = 1.0
    assumed_noise_rate: float = 0.2
    holdout: float = 0.0
    validation: float = 0.0
    seed: int = 0
    log_every_kimg: float = 8.0
    checkpoint_every_kimg: float = 64.0
    samples_per_class: int = 8

    def __post_init__(self) -> None:
        check_numbers(self)
        for name, choices in CHOICE_FIELDS.items():
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"unknown `{name}` {value!r}; choose one of {', '.join(choices)}")
        if self.subset is not None and (isinstance(self.subset, bool) or not isinstance(self.subset, int)
                                        or self.subset < 1):
            raise ValueError(f"`subset` must be a whole number of images per class >= 1; got {self.subset!r}")
        if self.topk < 1:
            raise ValueError("`topk` must be >= 1")
        if self.batch_size < 1:
            raise ValueError("`batch_size` must be >= 1")
        if not self.total_kimg > 0:
            raise ValueError("`total_kimg` must be > 0")
        if not self.lr > 0:
            raise ValueError("`lr` must be > 0")
        if self.lambda_cls < 0:
            raise ValueError("`lambda_cls` must be >= 0")
        if not 0 <= self.label_dropout < 1:
            raise ValueError("`label_dropout` must be in [0, 1)")
        if not 0 <= self.labelled_share < 1:
            raise ValueError("`labelled_share` must be in [0, 1)")
        if not (self.pu_prior in PU_PRIORS or (isinstance(self.pu_prior, (int, float))
                                                and not isinstance(self.pu_prior, bool) and 0 < self.pu_prior < 1)):
            raise ValueError(f"`pu_prior` must be estimate, oracle or the share of positives in (0, 1); "
                             f"got {self.pu_prior!r}")
        if not 0 <= self.table_settle <= 1:
            raise ValueError(f"`table_settle` must be in [0, 1]; got {self.table_settle}")
        if not self.elr_lambda >= 0:
            raise ValueError(f"`elr_lambda` must be >= 0; got {self.elr_lambda}")
        if not self.transition_smoothing >= 0:
            raise ValueError(f"`transition_smoothing` must be >= 0; got {self.transition_smoothing}")
        if self.samples_per_class < 0 or self.seed < 0:
            raise ValueError("`samples_per_class` and `seed` must be >= 0")
        if not (self.ema_halflife_kimg > 0 and self.ema_rampup_ratio >= 0 and self.grad_clip >= 0
                and self.lr_rampup_kimg >= 0 and self.p_std > 0 and self.sigma_data > 0):
            raise ValueError("`ema_halflife_kimg`, `p_std` and `sigma_data` must be > 0, and `ema_rampup_ratio`, "
                             "`grad_clip` and `lr_rampup_kimg` >= 0")
        if not 0 <= self.assumed_noise_rate < 1:
            raise ValueError(f"`assumed_noise_rate` must be in [0, 1); got {self.assumed_noise_rate}")
        if not 0 <= self.holdout <= 0.5:
            raise ValueError(f"`holdout` must be a share in [0, 0.5]; got {self.holdout}")
        if not 0 <= self.validation <= 0.5:
            raise ValueError(f"`validation` must be a share in [0, 0.5]; got {self.validation}")
        if self.table_refresh_max_kimg is not None and not self.table_refresh_max_kimg > 0:
            raise ValueError(f"`table_refresh_max_kimg` must be > 0 (or None); got {self.table_refresh_max_kimg}")
        if ((self.table_refresh_kimg is not None and self.table_refresh_kimg <= 0)
                or self.checkpoint_every_kimg <= 0 or self.log_every_kimg <= 0):
            raise ValueError("refresh, checkpoint and log intervals must be > 0 kimg")
        if self.posterior.sigma_lo is None:
            raise ValueError("the training posterior needs an explicit interval (sigma_lo, sigma_hi)")

    def holdout_count(self, kind: str, n_train: int) -> int:
        """How many training images the safeguard holds out (0 where it does not apply)."""
        if self.method != "dmis" or kind not in HOLDOUT_KINDS or self.holdout == 0:
            return 0
        return min(HOLDOUT_MAX_ROWS, max(1, round(self.holdout * n_train)))

    def refresh_kimg(self, kind: str) -> float:
        """The first table refresh interval (`table_refresh_kimg` if set, else 8 kimg).

        Frequent early E-steps are the big lever: on digits (seed 0, 128 kimg) partial q = 0.5
        went from 73.8% (every 32 kimg) to 93.8% (every 8 kimg), and semi-10 from 89.6% (32) to
        96.2% (16). `kind` is kept for label kinds that may need their own start.
        """
        if self.table_refresh_kimg is not None:
            return self.table_refresh_kimg
        return 8.0

    def cls_temperature_scale(self, table_temperature: float) -> float:
        """The temperature the classification loss divides its one-sigma logits by."""
        return table_temperature if self.cls_logits == "table" else 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["posterior"] = self.posterior.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        # Runs saved before execution settings moved to `Execution` carry them in their config;
        # they never decided what a run is, so they are dropped, not rejected.
        d = {k: v for k, v in d.items() if k not in LEGACY_EXECUTION_KEYS}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}: written by a newer version?")
        d = dict(d)
        # Runs saved before `noisy_prior` existed used the observed label frequencies: a resume
        # goes on as the run began, whatever the default becomes.
        d.setdefault("noisy_prior", "observed")
        d.setdefault("transition_mstep", "em")  # the same for the T M-step (before 2026-12-07)
        d.setdefault("table_settle_floor", False)  # and for the settle test
        if isinstance(d.get("posterior"), dict):
            d["posterior"] = PosteriorConfig(**d["posterior"])
        return cls(**d)

    def replace(self, **changes) -> "TrainConfig":
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(changes)
        return TrainConfig(**d)


@dataclass(frozen=True)
class Execution:
    """How a run is executed, not what it is: none of these change the optimisation problem, so
    they are arguments of `train`, not part of the saved `TrainConfig`, and a run may be resumed
    with different ones (e.g. on another device).

    device: "cpu", "cuda", "cuda:N", or "auto" (LOCAL_RANK's GPU under torchrun, else CPU).
    precision: "fp32", or "bf16" to autocast the network forward to bfloat16 (GPU).
    channels_last: NHWC memory layout for the convolutions (faster on GPU).
    compile: torch.compile the training network (GPU, long runs).
    """

    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown `precision` {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.device != "auto":
            check_device(self.device)


def check_device(device: str) -> None:
    """ValueError, in one line, for a device string torch does not know or a GPU that is not there."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"unknown `device` {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"`device` {device}: torch sees no CUDA GPU on this machine; use cpu")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"`device` {device}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    elif dev.type != "cpu":
        raise ValueError(f"`device` {device}: only cpu and cuda are supported")
