"""The training loop: vanilla conditional diffusion or DMIS from imprecise labels.

One step (DMIS, default EM form):
  1. draw the global batch (indices, sigma, noise, label-dropout mask) from ONE torch.Generator —
     every rank draws the same numbers and takes its slice, so N processes reproduce one process
     and a resumed run reproduces an uninterrupted one bit for bit (CPU);
  2. posterior weights w = p_phi(y | x0, z): the table of EMA clean-image posteriors (the E-step,
     `refresh_table`: first after `config.refresh_kimg(kind)`, then at intervals that double
     once the table settles) restricted by the label likelihood p(z | y), with T re-estimated at
     each refresh for noisy labels (and, with `posterior_fit` refit or prune, the posterior's
     schedule refitted at refreshes 1, 2, 4, ...: `schedule_fit`); keep the top k (ties broken
     by a uniform draw);
  3. ONE batched forward over the k kept classes gives D(x, sigma, y) for each; from it both the
     generative loss and, where sigma lies in the classifier interval, the one-sigma diffusion
     classifier of the classification loss;
  4. Adam step with lr ramp-up, gradient clipping, EMA by half-life in images.
Non-finite losses stop the run with a clear message; the last good checkpoint stays.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from label_models.io import save_labels
from label_models.likelihood import initial_log_prior, label_likelihood, pick_candidates
from label_models.priors import partial_prior_update
from label_models.transition import (estimate_transition_anchor, estimate_transition_em, implied_noise_rate,
                                     symmetric_transition, transition_m_step, unmix_posterior)

from wsl_diffusion.config import Execution, TrainConfig
from wsl_diffusion.data.datasets import ArrayDataset, to_model_space
from wsl_diffusion.data.images import image_grid, save_png
from wsl_diffusion.eval.plots import training_curves
from wsl_diffusion.eval.posterior_metrics import evaluate_posterior
from wsl_diffusion.model.precond import EDMDenoiser, denoising_error
from wsl_diffusion.posterior import (INFERENCE_DRAWS, PosteriorConfig, diffusion_posterior, fit_temperature,
                                     label_evidence, log_posterior, noised_input_errors, quadrature_weights,
                                     sigma_levels, validation_scores)
from wsl_diffusion.eval.validation import label_rows, score_validation, scoring_labels, validation_split
from wsl_diffusion.run import (CHECKPOINT_NAME, CURVES_NAME, LABELS_NAME, SAMPLES_NAME, STATS_NAME, SUMMARY_NAME, atomic_write_text,
                               build_denoiser, build_model_from, check_run_dir, checkpoint_config, clean_after_crash,
                               load_checkpoint, run_lock, run_posterior, save_checkpoint, save_config)
from wsl_diffusion.sampling import sample_per_class
from wsl_diffusion.schedule_fit import EVIDENCE_STDERRS, refit_schedule
from wsl_diffusion.training import distributed as dist_utils
from wsl_diffusion.training.losses import (classifier_logits, dmis_generative_loss, elr_loss, forward_corrected_loss, nnpu_loss,
                                           restrict_posterior, sample_sigma, soft_target_loss, topk_classes,
                                           vanilla_loss)
from wsl_diffusion.training.progress import TrainProgress
from wsl_diffusion.training.pu_prior import estimate_pu_prior


# A fitted posterior temperature this large (fit_temperature's bound is 1e3) means the flat
# prior explains the labels as well as the model does: the model is not informative yet.
TAU_BOUND_UNINFORMATIVE = 500.0


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the run stopped and its last good checkpoint was kept."""


# ----------------------------------------------------------------------------------------------
# Label model -> tensors the loop needs


def initial_transition(labels, config: TrainConfig) -> np.ndarray | None:
    """The T a run starts from: None unless the labels are noisy; the stored (true) T only when
    the config asks for the oracle; else symmetric noise at `assumed_noise_rate`."""
    if labels.kind != "noisy":
        return None
    if config.transition == "oracle":
        if labels.transition_matrix is None:
            raise ValueError("`transition` is oracle but the label file stores no transition matrix; "
                             "use estimate or assumed")
        return np.array(labels.transition_matrix, dtype=np.float64)  # a writable copy
    return symmetric_transition(labels.num_classes, config.assumed_noise_rate)


def label_tensors(labels, *, assumed_noise_rate: float, transition: np.ndarray | None = None,
                  log_prior: torch.Tensor | None = None, device="cpu") -> dict[str, torch.Tensor]:
    """The label model as the tensors `step_loss` takes: lik (N, K) = p(z | y) under the given
    T (noisy labels) or the run's class prior `log_prior` (PU labels), label_rows (N, K) (the
    stored label rows), observed (N,) hard labels (-1 where none) and is_labelled (N,)."""
    n = labels.num_samples
    observed = labels.observed if labels.observed is not None else np.full(n, -1)
    prior = None if log_prior is None else log_prior.double().exp().cpu().numpy()
    return {
        "lik": torch.as_tensor(label_likelihood(labels, assumed_noise_rate=assumed_noise_rate, transition_matrix=transition,
                                                class_prior=None if prior is None else prior / prior.sum()),
                               dtype=torch.float32, device=device),
        "label_rows": torch.tensor(labels.matrix, dtype=torch.float32, device=device),
        "observed": torch.as_tensor(np.array(observed), device=device),
        "is_labelled": torch.tensor(labels.is_labelled, device=device),
    }


def vanilla_targets(kind: str, rows: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Class vectors (B, K) for the vanilla baseline: the imprecise label taken as if clean.

    noisy/clean/semi-labelled: the observed one-hot; unlabelled: the all-zero (unconditional)
    vector; partial: one candidate picked uniformly at each step with the uniform draw u (B,);
    PU: unlabelled taken as negative. `rows` are the (B, K) label rows of the batch.
    """
    b, k = rows.shape
    if kind == "partial":
        pick = pick_candidates(rows.cpu().numpy(), u.cpu().numpy())
        return F.one_hot(torch.from_numpy(pick).to(rows.device), k).float()
    if kind == "pu":
        positive = rows[:, 0] == 0  # labelled positives have row [0, 1]
        return F.one_hot(positive.long(), k).float()
    unlabelled = rows.sum(dim=1) > 1
    return torch.where(unlabelled[:, None], torch.zeros_like(rows), rows)


# ----------------------------------------------------------------------------------------------
# State


@dataclass
class TrainState:
    net: EDMDenoiser
    ema: EDMDenoiser
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    nimg: int
    step: int
    table: torch.Tensor  # (N, K) unrestricted EMA posteriors f_phi(y | x0) of the training images
    log_prior: torch.Tensor  # (K,)
    temperature: float
    refreshes: int
    transition: torch.Tensor | None = None  # (K, K) the T in use for noisy labels, else None
    refresh_interval_kimg: float = 0.0  # the E-step schedule: current interval ...
    next_refresh_nimg: int = 0  # ... and when the next refresh is due
    table_settled: bool = False  # a refresh (of a trusted model) has moved fewer than `table_settle` of the labels
    class_names: tuple[str, ...] = ()
    posterior: PosteriorConfig | None = None  # the schedule in use (fitted at refreshes, or the config's)

    def state_dict(self, config: TrainConfig) -> dict:
        return {
            "config": config.to_json(),
            "net": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "nimg": self.nimg,
            "step": self.step,
            "table": self.table.cpu(),
            "log_prior": self.log_prior.cpu(),
            "temperature": self.temperature,
            "refreshes": self.refreshes,
            "transition": self.transition.cpu() if self.transition is not None else torch.zeros(0),
            "refresh_interval_kimg": self.refresh_interval_kimg,
            "next_refresh_nimg": self.next_refresh_nimg,
            "table_settled": self.table_settled,
            "image_shape": list(self.net.image_shape),
            "num_classes": self.net.num_classes,
            "class_names": list(self.class_names),
            "posterior": self.posterior.to_dict(),
        }


def new_state(config: TrainConfig, image_shape, num_classes: int, log_prior: np.ndarray, n_train: int,
              device, *, transition: np.ndarray | None = None, first_refresh_kimg: float = 32.0) -> TrainState:
    init_gen = torch.Generator().manual_seed(config.seed)
    # Initialise weights from an explicit generator: same seed -> same model, any process. The
    # layers draw from the global RNG, so seed it inside fork_rng, which restores it afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=init_gen)))
        net = build_denoiser(config, image_shape, num_classes)
    net.to(device)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(config.seed + 1)
    table = torch.full((n_train, num_classes), 1.0 / num_classes, device=device)
    return TrainState(net, ema, opt, gen, nimg=0, step=0, table=table,
                      log_prior=torch.as_tensor(log_prior, dtype=torch.float32, device=device),
                      temperature=1.0, refreshes=0,
                      transition=None if transition is None else torch.as_tensor(transition, dtype=torch.float64),
                      refresh_interval_kimg=first_refresh_kimg, next_refresh_nimg=round(first_refresh_kimg * 1000),
                      posterior=config.posterior)


def load_state(ckpt: dict, config: TrainConfig, device, path: Path) -> TrainState:
    net = build_model_from(ckpt, config, path, weights="net").to(device)
    ema = build_model_from(ckpt, config, path, weights="ema").to(device).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    opt.load_state_dict(ckpt["optimizer"])
    gen = torch.Generator()
    gen.set_state(ckpt["generator"])
    # Checkpoints written before the E-step schedule and T estimation lack these: a fixed interval.
    transition = ckpt.get("transition", torch.zeros(0))
    interval, refreshes = config.table_refresh_kimg or 32.0, int(ckpt["refreshes"])
    return TrainState(net, ema, opt, gen, nimg=int(ckpt["nimg"]), step=int(ckpt["step"]),
                      table=ckpt["table"].to(device), log_prior=ckpt["log_prior"].to(device),
                      temperature=float(ckpt["temperature"]), refreshes=int(ckpt["refreshes"]),
                      transition=transition.double() if transition.numel() else None,
                      refresh_interval_kimg=float(ckpt.get("refresh_interval_kimg", interval)),
                      next_refresh_nimg=int(ckpt.get("next_refresh_nimg", round((refreshes + 1) * interval * 1000))),
                      table_settled=bool(ckpt.get("table_settled", False)),
                      class_names=tuple(ckpt.get("class_names", ())),
                      posterior=run_posterior(ckpt, config))


# ----------------------------------------------------------------------------------------------
# Pieces of a step


def ema_update(state: TrainState, config: TrainConfig, batch: int) -> None:
    """phi <- beta phi + (1 - beta) theta with beta = 0.5 ** (batch / half-life in images)."""
    halflife = config.ema_halflife_kimg * 1000
    if config.ema_rampup_ratio:
        halflife = min(halflife, state.nimg * config.ema_rampup_ratio)
    beta = 0.5 ** (batch / max(halflife, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(state.ema.parameters(), state.net.parameters()):
            p_ema.lerp_(p.detach(), 1 - beta)
        for b_ema, b in zip(state.ema.buffers(), state.net.buffers()):
            b_ema.copy_(b)


def run_log_prior(labels, config: TrainConfig, transition: np.ndarray | None, validation: torch.Tensor,
                  images: torch.Tensor | None = None) -> np.ndarray:
    """The run's starting class prior (`initial_log_prior`) from the labels of every row but the
    validation rows. PU labels: the share of positives `config.pu_prior` says (estimated from
    `images` and which rows are labelled, by default; the label file's stored prior only for
    "oracle")."""
    rows = np.flatnonzero(label_rows(labels.num_samples, validation).numpy())
    if len(validation):
        labels = labels.take(rows)
    if labels.kind == "pu":
        if config.pu_prior == "oracle":
            if labels.class_prior is None:
                raise ValueError("`pu_prior` is oracle but the label file stores no class prior; use estimate or "
                                 "give the share of positives")
            prior = np.asarray(labels.class_prior, dtype=np.float64)
        elif config.pu_prior == "estimate":
            if images is None:
                raise ValueError("estimating the PU class prior needs the training images")
            prior = estimate_pu_prior(images[torch.as_tensor(rows)].cpu().numpy(), labels.is_labelled,
                                      seed=config.seed)
        else:
            prior = np.array([1.0 - float(config.pu_prior), float(config.pu_prior)])
        labels = replace(labels, class_prior=prior)
    return initial_log_prior(labels, transition_matrix=transition if maps_prior_through_t(config) else None)


def estimated_noise_rate(labels, rows: np.ndarray, transition: np.ndarray) -> float:
    """The share of wrong labels that T implies, 1 - sum_y p(y) T[y, y], with p(y) the clean
    prior that the observed frequencies of `rows` imply through T (whatever prior the run uses):
    label-free, and exact for the true T up to sampling noise."""
    prior = np.exp(initial_log_prior(labels.take(rows), transition_matrix=transition))
    return implied_noise_rate(transition, prior)


def maps_prior_through_t(config: TrainConfig) -> bool:
    """Whether a noisy-label run's class prior is the one its observed label frequencies imply
    through its T (`noisy_prior` "transition", DMIS; and the oracle T always), not the frequencies."""
    return config.transition == "oracle" or (config.method == "dmis" and config.noisy_prior == "transition")


def holdout_split(config: TrainConfig, kind: str, n_train: int,
                  validation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows that train, rows held out for the E-step's safeguard), both sorted and both
    without the `validation` rows; a fixed draw from the run's seed, so a resumed run holds out
    the same images."""
    rest = torch.arange(n_train)[label_rows(n_train, validation)]
    n_held = min(config.holdout_count(kind, n_train), len(rest) - 1)
    if n_held <= 0:
        return rest, torch.zeros(0, dtype=torch.long)
    perm = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(config.seed * 1_000_003 + 104_729))]
    return perm[n_held:].sort().values, perm[:n_held].sort().values


def estep_restricts(config: TrainConfig, state: TrainState, kind: str) -> bool:
    """Whether the E-step restricts the training rows' posterior by p(z | y): always, except once
    a noisy-label table has settled with `table_restrict_settled` off (the network has trained on
    z, so its posterior already carries the label's evidence)."""
    return not (kind == "noisy" and not config.table_restrict_settled and state.table_settled)


def disputed_rows(config: TrainConfig, state: TrainState, kind: str, probs: torch.Tensor,
                  restricted: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the rows `disputed_uncond` trains unconditionally, those whose table label (the
    argmax of the restricted posterior `restricted`) is not the model's own best class (the argmax
    of the unrestricted `probs`). None before the first table, whose flat prior names no class,
    and none unless the option is on for noisy labels."""
    if not (config.disputed_uncond and kind == "noisy" and state.refreshes > 0):
        return torch.zeros(len(probs), dtype=torch.bool, device=probs.device)
    return probs.argmax(dim=1) != restricted.argmax(dim=1)


def model_trusted(errors: torch.Tensor, lik: torch.Tensor, log_prior: torch.Tensor, held: torch.Tensor) -> tuple[bool, dict]:
    """The safeguard's test: does the model explain the held-out rows' labels better than the
    prior does, by more than EVIDENCE_STDERRS standard errors (`label_evidence`)? No held-out
    rows: trusted, as before the safeguard existed."""
    if len(held) == 0:
        return True, {}
    ev = label_evidence(errors[held], lik[held], log_prior=log_prior)
    trusted = ev["gain"] > EVIDENCE_STDERRS * ev["stderr"]
    return trusted, {"heldout_gain": ev["gain"], "heldout_gain_stderr": ev["stderr"], "model_trusted": trusted}


MC_FLOOR_ROWS = 512  # rows drawn twice for the settle test's Monte-Carlo floor


@torch.no_grad()
def mc_floor(state: TrainState, images: torch.Tensor, restriction: torch.Tensor, fit: torch.Tensor,
             unmixing: np.ndarray | None, gen: torch.Generator, chunk: int) -> float:
    """The share of table labels (argmax of the posterior times `restriction`) that differ between
    two independent noise draws of the same model on up to MC_FLOOR_ROWS of the `fit` rows: how much
    a refresh moves through Monte-Carlo noise alone. The posterior is the table's (its schedule,
    pruning, tau, prior and, when given, unmixing)."""
    rows = torch.nonzero(fit).squeeze(1)
    rows = rows[torch.randperm(len(rows), generator=gen)[:MC_FLOOR_ROWS].to(rows.device)]
    labels = []
    for _ in range(2):
        errors = torch.cat([diffusion_posterior(state.ema, images[rows[i:i + chunk]], state.posterior,
                                                generator=gen).errors for i in range(0, len(rows), chunk)])
        probs = log_posterior(errors, temperature=state.temperature, log_prior=state.log_prior).exp()
        if unmixing is not None:
            probs = torch.as_tensor(unmix_posterior(probs.double().cpu().numpy(), unmixing),
                                    dtype=probs.dtype, device=probs.device)
        labels.append(restrict_posterior(probs, restriction[rows]).argmax(1))
    return float((labels[0] != labels[1]).float().mean())


def pruning_pass_posterior(coarse: torch.Tensor, lik: torch.Tensor, log_prior: torch.Tensor,
                           fit: torch.Tensor) -> tuple[float, np.ndarray]:
    """(tau, posterior): the pruning pass's all-class posterior (float64, every row) with its own
    tau fitted to the labels of the `fit` rows: what the anchor unmixing and the EM M-step read
    (the table has exact zeros where classes were pruned; see `refresh_table`)."""
    tau = fit_temperature(coarse[fit], lik[fit], log_prior=log_prior)
    return tau, log_posterior(coarse, temperature=tau, log_prior=log_prior).exp().double().cpu().numpy()


def transition_mstep(mstep: str, table_probs: np.ndarray, p_all: np.ndarray, observed: np.ndarray, *,
                     unmixing: np.ndarray | None, init: np.ndarray, smoothing: float) -> np.ndarray:
    """T re-estimated from the training rows' posteriors and observed labels z.

    "posterior": one count of the table's posterior read as p(y | x, z) (already unmixed when the
    table unmixes), T[y, z] ∝ sum_n p(y | x_n) [z_n = z]. "em": Dawid-Skene EM from `init` on the
    pruning pass's all-class posterior `p_all`, unmixed first when `unmixing` is given.
    """
    if mstep == "posterior":
        return transition_m_step(table_probs, observed, smoothing=smoothing)
    if unmixing is not None:
        p_all = unmix_posterior(p_all, unmixing)
    return estimate_transition_em(p_all, observed, init=init, smoothing=smoothing)


@torch.no_grad()
def refresh_table(state: TrainState, config: TrainConfig, images: torch.Tensor, tensors: dict[str, torch.Tensor],
                  labels, held: torch.Tensor | None = None, validation: torch.Tensor | None = None,
                  chunk: int = 512) -> dict:
    """The E-step: refit the posterior's schedule (`posterior_fit` "refit" or "prune", at refreshes
    1, 2, 4, ...), recompute the EMA posteriors of all training images, re-fit tau and the prior,
    re-estimate T (noisy labels, `transition="estimate"`), and schedule the next refresh.
    With `table_unmix`, once a refresh has moved fewer than `table_settle` of the labels, every
    later one unmixes the posterior before the table and the T M-step.
    The safeguard: until the model explains the held-out rows' labels (`held`) better than the
    prior (`model_trusted`), the table is the prior, so the restricted table says what the label
    model says, and T is not re-estimated.

    validation: rows whose labels nothing here reads (tau, prior, T and schedule fits skip
    them); the record scores the model on them (`validation_scores`).

    tensors["lik"] is replaced when T changes. Deterministic: its noise comes from a generator
    seeded by (seed, refresh index), so a resumed run refreshes exactly as an uninterrupted one.
    Returns the refresh's record for stats.jsonl.
    """
    lik = tensors["lik"]
    held = torch.zeros(0, dtype=torch.long) if held is None else held.to(images.device)
    fit = label_rows(len(images), validation).to(images.device)
    fit_np = fit.cpu().numpy()
    # `before` and `after` restrict the same way, so a refresh that settles the table moves nothing
    # by switching the restriction off.
    restricts = estep_restricts(config, state, labels.kind)
    before = restrict_posterior(state.table, lik if restricts else torch.ones_like(lik)).argmax(1)
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + 7919 * (state.refreshes + 1))
    info = {}
    number = state.refreshes + 1
    if config.posterior_fit != "fixed" and number & (number - 1) == 0:  # refreshes 1, 2, 4, 8, ...
        # Fitted where the labels are explained best: on the held-out rows when there are any
        # (the training rows' labels also trained the classification term), else on all rows.
        fit_rows = held if len(held) else torch.nonzero(fit).squeeze(1)
        fitted, info = refit_schedule(state.ema, images, lik, state.log_prior, state.posterior, rows=fit_rows.cpu(),
                                      generator=gen, search=config.posterior_fit == "refit")
        state.posterior = fitted.replace(temperature=config.posterior.temperature)  # the table fits its own tau
    also_keep = None
    if config.table_keep_label:
        # The class the label singles out (a noisy label's z) is refined beside the model's own
        # best classes, so the E-step never moves a label because pruning dropped its class.
        # It must not displace them: ranking on the label-restricted posterior, or forcing z
        # into the model's slots, took table accuracy from 94.0% to 91.5% on a trained sym-40
        # model, and on an early one sent the fitted tau to its bound (10% test accuracy).
        top = lik == lik.max(dim=1, keepdim=True).values
        also_keep = torch.where(top.sum(dim=1) == 1, top.float().argmax(dim=1), -1)
    results = [diffusion_posterior(state.ema, images[i:i + chunk], state.posterior, generator=gen,
                                   also_keep=None if also_keep is None else also_keep[i:i + chunk])
               for i in range(0, len(images), chunk)]
    errors = torch.cat([r.errors for r in results])  # +inf for classes pruned away
    coarse = torch.cat([r.coarse_errors for r in results])  # every class, at the pruning levels
    # The test sees every class: with the pruned posterior, a label whose class pruning dropped
    # costs log T[z, z] / T[y, z] however good the model is, and the test never passes.
    trusted, trust_info = model_trusted(coarse, lik, state.log_prior, held)
    info.update(trust_info)
    if config.calibrate_table and labels.kind != "pu":
        state.temperature = fit_temperature(errors[fit], lik[fit], log_prior=state.log_prior)
    probs = log_posterior(errors, temperature=state.temperature, log_prior=state.log_prior).exp()

    if labels.kind == "partial":
        pi = partial_prior_update(state.log_prior.exp().cpu().numpy(), probs[fit].cpu().numpy(),
                                  labels.matrix[fit_np], momentum=0.5)
        state.log_prior = torch.as_tensor(np.log(np.clip(pi, 1e-4, None) / np.clip(pi, 1e-4, None).sum()),
                                          dtype=torch.float32, device=images.device)
        probs = log_posterior(errors, temperature=state.temperature, log_prior=state.log_prior).exp()
    unmixing, tau_all, p_all = None, None, None
    if labels.kind == "noisy" and config.table_unmix and trusted and state.table_settled:
        # The network learned the posterior of the labels it was trained on (the last table's),
        # not the clean one; with it the E-step below sits at a fixed point however right T is
        # (docs/benchmark-digits.md, asym-40). Their transition is estimated without labels, by
        # anchor points of the all-class posterior, and inverted out of both posteriors that follow.
        # An uninformative posterior (tau at its bound) has no anchors: left as it is.
        # Only once the table has settled, i.e. at that fixed point: a young model's posterior is
        # too flat for anchors (sym-40, 8 kimg: an estimated 89% off-diagonal, whose inverse took
        # the first table from 24% to 9% true class and 32 kimg from 80.7% to 45.1% test accuracy).
        tau_all, p_all = pruning_pass_posterior(coarse, lik, state.log_prior, fit)
        if tau_all < TAU_BOUND_UNINFORMATIVE:
            unmixing = estimate_transition_anchor(p_all[fit_np])
            info["unmix_offdiag"] = float(1.0 - np.diag(unmixing).mean())
            probs = torch.as_tensor(unmix_posterior(probs.double().cpu().numpy(), unmixing),
                                    dtype=probs.dtype, device=probs.device)
    if labels.kind == "noisy" and config.transition == "estimate" and trusted:
        # The M-step needs every class's posterior, and the table has exact zeros where classes
        # were pruned, which EM reads as certainty (in a run that always kept the observed class,
        # T drifted towards the identity: max error 0.24 -> 0.39 at sym-40). The pruning pass
        # scored all classes: its posterior, with its own fitted tau, is cruder but unshaped.
        if p_all is None:
            tau_all, p_all = pruning_pass_posterior(coarse, lik, state.log_prior, fit)
        info["transition_tau"] = tau_all
        # An uninformative model (tau at its bound: the prior explains the labels as well as the
        # model does) identifies nothing about T: keep the current estimate.
        if tau_all < TAU_BOUND_UNINFORMATIVE:
            # The network trained on these rows: its posterior already carries each row's z, and
            # EM's E-step, p(y | x) T[y, z], would count z again, round after round, pulling T
            # towards the identity (docs/benchmark-digits.md, "Measured cause"). So once the table
            # has settled, the default reads the table's posterior as p(y | x, z) and counts once.
            mstep = "posterior" if config.transition_mstep == "posterior" and state.table_settled else "em"
            t = transition_mstep(mstep, probs[fit].double().cpu().numpy(), p_all[fit_np],
                                 np.asarray(labels.observed)[fit_np], unmixing=unmixing,
                                 init=state.transition.numpy(), smoothing=config.transition_smoothing)
            info["transition_from_posterior"] = mstep == "posterior"
            state.transition = torch.as_tensor(t)
            if maps_prior_through_t(config):  # the clean prior this T implies, from the next table on
                state.log_prior = torch.as_tensor(
                    initial_log_prior(labels.take(np.flatnonzero(fit_np)), transition_matrix=t),
                    dtype=torch.float32, device=images.device)
            lik = tensors["lik"] = torch.as_tensor(
                label_likelihood(labels, assumed_noise_rate=config.assumed_noise_rate, transition_matrix=t),
                dtype=torch.float32, device=lik.device)
    if config.table_pruned == "coarse" and trusted and not bool(torch.isfinite(errors).all()):
        # A two-stage posterior instead of zeros for the classes pruning dropped: p(kept set) and
        # every dropped class from the all-class pass, the split within the kept set from the
        # fine levels. A dropped observed label then keeps the weight its coarse score earns.
        kept = torch.isfinite(errors)
        tau_coarse = fit_temperature(coarse[fit], lik[fit], log_prior=state.log_prior)
        p_coarse = log_posterior(coarse, temperature=tau_coarse, log_prior=state.log_prior).exp()
        probs = torch.where(kept, probs * (p_coarse * kept).sum(dim=1, keepdim=True), p_coarse)
    if not trusted:
        probs = state.log_prior.exp().expand_as(probs).clone()
    # A table held back by the safeguard does not move because the model is not trusted yet, not
    # because EM converged: it counts as settled only once the model is trusted.
    state.table = probs
    state.refreshes += 1
    restriction = lik if restricts else torch.ones_like(lik)
    after = restrict_posterior(probs, restriction).argmax(1)
    moved = float((after != before)[fit].float().mean())
    settled = moved < config.table_settle
    if config.table_settle_floor and trusted:
        # What an unchanged model would move: two independent draws of the table's posterior on a
        # sample of the rows. A table that moves no more than that has stopped changing.
        info["table_mc_floor"] = mc_floor(state, images, restriction, fit, unmixing, gen, chunk)
        settled = settled or moved <= info["table_mc_floor"]
    settled = settled and trusted
    state.table_settled = state.table_settled or settled
    if (settled and config.table_refresh_max_kimg is not None
            and state.refresh_interval_kimg < config.table_refresh_max_kimg):
        state.refresh_interval_kimg = min(2 * state.refresh_interval_kimg, config.table_refresh_max_kimg)
    state.next_refresh_nimg += round(state.refresh_interval_kimg * 1000)
    info = {"refresh": state.refreshes, "temperature": state.temperature, "labels_moved": moved,
            "next_refresh_kimg": state.next_refresh_nimg / 1000, "sigma_lo": state.posterior.sigma_lo,
            "sigma_hi": state.posterior.sigma_hi, "num_sigmas": state.posterior.num_sigmas,
            "keep_classes": state.posterior.keep_classes, "table_settled": state.table_settled, **info}
    # Diagnostics only, never used for training: agreement with the true labels and T, which a
    # synthetic label file records and a real one does not.
    if labels.true_labels is not None:
        truth = torch.tensor(labels.true_labels, device=images.device)
        info["table_true_class_rate"] = float((after == truth)[fit].float().mean())
    if state.transition is not None and config.transition == "estimate":  # label-free: the run's own estimate
        info["estimated_noise_rate"] = estimated_noise_rate(labels, np.flatnonzero(fit_np), state.transition.numpy())
    if state.transition is not None and labels.transition_matrix is not None:
        err = np.abs(state.transition.numpy() - labels.transition_matrix)
        info["transition_error_max"], info["transition_error_mean"] = float(err.max()), float(err.mean())
    if validation is not None and len(validation):
        val = validation.to(images.device)
        _, scored_lik, _ = scoring_labels(labels, lik, config)  # a second stage: its first stage's labels
        scores = validation_scores(errors[val], scored_lik[val], temperature=state.temperature,
                                   log_prior=state.log_prior)
        info["validation_agreement"] = scores["agreement"]
    return info


WDSM_LEVELS = 2  # offset levels of the noised-input posterior: all K classes at each, every step


def wdsm_offsets(config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Offset levels (and ELBO weights) at which the weighted-DSM form scores noised inputs."""
    cfg = config.posterior.replace(num_sigmas=WDSM_LEVELS, keep_classes=None)
    offsets = sigma_levels(cfg)
    return offsets, quadrature_weights(offsets, cfg)


def labelled_pools(labels, config: TrainConfig,
                   rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(labelled indices, unlabelled indices) when batches should over-sample the labelled ones.

    Semi-supervised labels with a labelled fraction below `config.labelled_share` (and both pools
    non-empty); None otherwise, i.e. every example is drawn uniformly. rows: the rows that may
    be drawn (None: all).
    """
    if labels.kind != "semi" or config.labelled_share <= 0:
        return None
    mask = np.asarray(labels.is_labelled, dtype=bool)
    allowed = np.ones(len(mask), dtype=bool) if rows is None else np.isin(np.arange(len(mask)), rows.numpy())
    if mask[allowed].all() or not mask[allowed].any() or mask[allowed].mean() >= config.labelled_share:
        return None
    return torch.as_tensor(np.flatnonzero(mask & allowed)), torch.as_tensor(np.flatnonzero(~mask & allowed))


def draw_indices(b: int, n_train: int, g: torch.Generator, *, share: float = 0.0,
                 pools: tuple[torch.Tensor, torch.Tensor] | None = None,
                 rows: torch.Tensor | None = None) -> torch.Tensor:
    """Example indices of one batch: uniform over `rows` (all n_train when None), or a `share`
    of them from the labelled pool."""
    if pools is None:
        pick = torch.randint(n_train if rows is None else len(rows), (b,), generator=g)
        return pick if rows is None else rows[pick]
    labelled, unlabelled = pools
    from_labelled = torch.rand(b, generator=g) < share
    pick_l = labelled[torch.randint(len(labelled), (b,), generator=g)]
    pick_u = unlabelled[torch.randint(len(unlabelled), (b,), generator=g)]
    return torch.where(from_labelled, pick_l, pick_u)


def draw_batch(config: TrainConfig, state: TrainState, n_train: int, image_shape, num_classes: int,
               pools: tuple[torch.Tensor, torch.Tensor] | None = None, rows: torch.Tensor | None = None) -> dict:
    """All randomness of one global step, from the state's generator, in a fixed order.

    pools: from `labelled_pools` (semi-supervised over-sampling of the labelled examples).
    rows: the rows that may be drawn (`holdout_split`); None: all.
    """
    b = config.batch_size
    g = state.generator
    out = {
        "idx": draw_indices(b, n_train, g, share=config.labelled_share, pools=pools, rows=rows),
        "sigma": sample_sigma(b, generator=g, p_mean=config.p_mean, p_std=config.p_std),
        "noise": torch.randn((b, *image_shape), generator=g),
        "drop": torch.rand(b, generator=g) < config.label_dropout,
        "u": torch.rand(b, generator=g),  # the vanilla baseline's candidate pick (partial labels)
    }
    if config.method == "dmis" and config.gen_form == "wdsm":
        # noise of the noised-input posterior, one image per offset level, batch-first (B, S, C, H, W)
        out["post_noise"] = torch.randn((b, WDSM_LEVELS, *image_shape), generator=g)
    if config.method == "dmis" and config.table_tie_break == "random":
        out["jitter"] = torch.rand((b, num_classes), generator=g)  # breaks ties of the top-k at random
    return out


def step_loss(config: TrainConfig, state: TrainState, model, batch: dict, *, images, lik, label_rows,
              labels, observed, is_labelled) -> tuple[torch.Tensor, dict]:
    """The loss of this rank's slice of the batch (a scalar: mean over the slice) and its parts.

    `model` is the (possibly DDP-wrapped) denoiser used for the gradient forward.
    """
    device = images.device
    idx = batch["idx"].to(device)
    x0 = images[idx]
    sigma = batch["sigma"].to(device)
    noise = batch["noise"].to(device)
    drop = batch["drop"].to(device)
    rows = lik[idx] if estep_restricts(config, state, labels.kind) else torch.ones_like(lik[idx])
    k_all = lik.shape[1]
    stats = {}

    if config.method == "vanilla":
        cond = vanilla_targets(labels.kind, label_rows[idx], batch["u"].to(device))
        cond = torch.where(drop[:, None], torch.zeros_like(cond), cond)
        sq_err, _ = denoising_error(model, x0, cond[:, None, :], sigma, noise)
        gen_loss = vanilla_loss(sq_err, sigma, x0, sigma_data=config.sigma_data)
        stats["loss_gen"] = float(gen_loss.detach().mean())
        return gen_loss.mean(), stats

    # --- DMIS: posterior weights restricted by the imprecise label --------------------------
    if config.gen_form == "wdsm":
        # The paper's form: weights from the EMA posterior of the NOISED input, every step.
        offsets, weights = wdsm_offsets(config)
        x_noised = x0 + sigma.view(-1, 1, 1, 1) * noise
        errs = noised_input_errors(state.ema, x_noised, sigma, offsets=offsets, weights=weights,
                                   noise=batch["post_noise"].transpose(0, 1).to(device))
        probs = log_posterior(errs, temperature=state.temperature, log_prior=state.log_prior).exp()
    else:
        probs = state.table[idx]
    weights_full = restrict_posterior(probs, rows)
    k = k_all if labels.kind == "pu" else min(config.topk, k_all)
    jitter = batch["jitter"].to(device) if "jitter" in batch else None
    classes, weights = topk_classes(weights_full, k, tie_break=state.table[idx], jitter=jitter)
    onehots = F.one_hot(classes, k_all).float()
    # Rows the label and the model dispute teach no class model (`disputed_uncond`, off by default).
    disputed = disputed_rows(config, state, labels.kind, probs, weights_full)
    if config.disputed_uncond and labels.kind == "noisy":
        stats["disputed"] = float(disputed.float().mean())
    uncond = drop | disputed
    if labels.kind == "semi" and state.refreshes == 0:
        # Cold start: before the first table the posterior of an unlabelled image is the flat
        # initial table, so its top k would be arbitrary classes (the lowest indices). Train such
        # images unconditionally until the model has a posterior to offer.
        uncond = drop | ~is_labelled[idx]
    onehots = torch.where(uncond[:, None, None], torch.zeros_like(onehots), onehots)  # unconditional rows

    sq_err, denoised = denoising_error(model, x0, onehots, sigma, noise)  # ONE k-way forward
    gen_loss = dmis_generative_loss(form=config.gen_form, weights=weights, sq_err=sq_err,
                                    denoised=denoised, x0=x0, sigma=sigma, sigma_data=config.sigma_data)
    loss = gen_loss.mean()
    stats["loss_gen"] = float(loss.detach())

    # --- classification term on the same outputs ----------------------------------------------
    # The classification term stays on the configured interval: on the fitted one it would train
    # the model to classify where the fit found it classifies best, and the fit would confirm it
    # (measured on digits sym-40: an early fit of [2.5, 20] stayed there, table 58% -> 69%).
    lo, hi = config.posterior.sigma_lo, config.posterior.sigma_hi
    in_interval = (sigma >= lo) & (sigma <= hi) & ~uncond
    if config.lambda_cls > 0 and state.refreshes > 0 and bool(in_interval.any()):
        logits = classifier_logits(sq_err, sigma, log_prior=state.log_prior[classes],
                                   width=max(math.log(hi / lo), 1.0) / config.cls_temperature_scale(state.temperature))
        log_probs = torch.log_softmax(logits, dim=1)  # (B, k) over the kept classes
        m = in_interval
        if labels.kind == "pu":
            full = torch.full_like(log_probs, -float("inf")).scatter(1, classes, log_probs)
            prior_pos = float(state.log_prior.exp()[1])
            cls = nnpu_loss(full[m], is_labelled[idx][m], prior_pos)
        elif labels.kind == "noisy" and config.noisy_cls == "forward":
            t_rows = state.transition.to(device=device, dtype=torch.float32)[:, observed[idx].clamp_min(0)].T
            cls = forward_corrected_loss(log_probs[m], t_rows.gather(1, classes)[m]).mean()
        elif labels.kind == "noisy" and config.noisy_cls == "elr":
            ema_kept = state.table[idx].gather(1, classes)
            ema_kept = ema_kept / ema_kept.sum(1, keepdim=True).clamp_min(1e-12)
            obs = F.one_hot(observed[idx].clamp_min(0), k_all).float().gather(1, classes)
            cls = elr_loss(log_probs[m], ema_kept[m], obs[m], lam=config.elr_lambda).mean()
        else:  # partial (EMA-PRODEN), semi / clean (mean teacher), noisy "table": the same soft-target CE
            cls = soft_target_loss(log_probs[m], weights[m]).mean()
        # Scale by the fraction of the batch that carries the term, so its weight per sample
        # does not depend on how often sigma lands in the interval.
        cls = cls * m.float().mean()
        loss = loss + config.lambda_cls * cls
        stats["loss_cls"] = float(cls.detach())
    return loss, stats


# ----------------------------------------------------------------------------------------------
# The loop


def inference_posterior(state: TrainState, *, draws: int = INFERENCE_DRAWS) -> PosteriorConfig:
    """How a finished run classifies its test split: the table's schedule, class pruning and tau,
    with `draws` noise draws per level (the table itself uses one)."""
    return state.posterior.replace(temperature=state.temperature, draws=draws)


def _evaluate_quick(net, state: TrainState, test_images, test_targets, *, draws: int = INFERENCE_DRAWS) -> float:
    return evaluate_posterior(net, test_images, test_targets, inference_posterior(state, draws=draws),
                              log_prior=state.log_prior).accuracy


def train(config: TrainConfig, run_dir: Path, *, train_data: ArrayDataset, labels,
          test_data: ArrayDataset | None = None, test_targets: np.ndarray | None = None,
          resume: bool = False, execution: Execution = Execution(), max_steps: int | None = None,
          max_seconds: float | None = None, progress: bool = True, console=None) -> dict:
    """Train (or resume) a run in `run_dir`. Returns a summary dict (also written as summary.json).

    labels: a `label_models.ImpreciseLabels` aligned with train_data. test_targets: the test-set
    targets in the label model's class space (PU: binary). execution: device, precision, memory
    layout, compilation; free to differ between the calls of one run. max_steps: stop after this many steps
    of this call without saving (simulates a crash; used by tests). max_seconds: a wall-clock
    budget for this call; when it runs out the run is checkpointed and stops (resumable).
    """
    ctx = dist_utils.init()
    # One trainer per run directory: a second one (say, with another seed) would interleave its
    # checkpoints and config with the first's. Rank 0 holds the lock for the whole call.
    with run_lock(Path(run_dir)) if ctx.is_main else contextlib.nullcontext():
        return _train(config, run_dir, train_data=train_data, labels=labels, test_data=test_data,
                      test_targets=test_targets, resume=resume, execution=execution, max_steps=max_steps,
                      max_seconds=max_seconds, progress=progress, console=console)


def _train(config: TrainConfig, run_dir: Path, *, train_data: ArrayDataset, labels,
           test_data: ArrayDataset | None, test_targets: np.ndarray | None, resume: bool,
           execution: Execution, max_steps: int | None, max_seconds: float | None, progress: bool,
           console) -> dict:
    """The body of `train`, run under the run directory's lock."""
    run_dir = Path(run_dir)
    ctx = dist_utils.init()
    device = torch.device(ctx.device if execution.device == "auto" else execution.device)
    if labels.num_samples != len(train_data):
        raise ValueError(f"label file has {labels.num_samples} rows but the training split has {len(train_data)} images")
    images = to_model_space(train_data.images).to(device)
    image_shape = tuple(images.shape[1:])
    n_train = len(images)
    num_classes = labels.num_classes
    transition0 = initial_transition(labels, config)
    validation = validation_split(config, labels, n_train)

    ckpt_path = run_dir / CHECKPOINT_NAME
    check_run_dir(run_dir, resume=resume)
    if resume:
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        saved = checkpoint_config(ckpt, ckpt_path)
        if saved.replace(total_kimg=config.total_kimg) != config:
            changed = [f"`{k}`" for k, v in config.to_dict().items() if saved.to_dict()[k] != v and k != "total_kimg"]
            raise ValueError(f"`resume`: {', '.join(changed)} differ from the run saved in {run_dir} "
                             "(only `total_kimg` may change); start a new `run_dir` instead")
        state = load_state(ckpt, config, device, ckpt_path)
        if ctx.is_main:
            clean_after_crash(run_dir, step=state.step, refreshes=state.refreshes)
        transition = None if state.transition is None else state.transition.numpy()
    else:
        state = new_state(config, image_shape, num_classes, run_log_prior(labels, config, transition0, validation, images),
                          n_train, device, transition=transition0, first_refresh_kimg=config.refresh_kimg(labels.kind))
        transition = transition0
    tensors = label_tensors(labels, assumed_noise_rate=config.assumed_noise_rate, transition=transition,
                            log_prior=state.log_prior, device=device)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(run_dir, config)
        save_labels(run_dir / LABELS_NAME, labels)

    state.class_names = ("negative", "positive") if labels.kind == "pu" else tuple(train_data.class_names)
    if execution.channels_last:
        state.net.to(memory_format=torch.channels_last)
        state.ema.to(memory_format=torch.channels_last)
    model = dist_utils.wrap(state.net, ctx)
    if execution.compile:
        model = torch.compile(model)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if execution.precision == "bf16"
                else contextlib.nullcontext())
    total_steps = math.ceil(config.total_kimg * 1000 / config.batch_size)
    ckpt_every = max(1, round(config.checkpoint_every_kimg * 1000 / config.batch_size))
    log_every = max(1, round(config.log_every_kimg * 1000 / config.batch_size))
    needs_table = config.method == "dmis"
    train_rows, held_rows = holdout_split(config, labels.kind, n_train, validation)
    rows = train_rows if len(held_rows) or len(validation) else None
    pools = labelled_pools(labels, config, rows)

    stats_file = open(run_dir / STATS_NAME, "a") if ctx.is_main else None
    t_start = time.perf_counter()
    steps_this_call = 0
    budget_hit = False
    acc_stats: dict[str, list[float]] = {}
    bar = TrainProgress(total_steps, enabled=progress and ctx.is_main, console=console)
    bar.advance_to(state.step)
    try:
        while state.step < total_steps:
            if max_steps is not None and steps_this_call >= max_steps:
                break
            if max_seconds is not None and time.perf_counter() - t_start > max_seconds:
                if ctx.is_main:
                    save_checkpoint(ckpt_path, state.state_dict(config))
                budget_hit = True
                break
            if needs_table and state.nimg >= state.next_refresh_nimg:
                info = refresh_table(state, config, images, tensors, labels, held=held_rows, validation=validation)
                if stats_file:
                    stats_file.write(json.dumps({"kimg": state.nimg / 1000, **info}) + "\n")

            batch = draw_batch(config, state, n_train, image_shape, num_classes, pools, rows)
            local = dist_utils.local_slice(batch, ctx)
            for group in state.optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, (state.nimg + 1) / max(config.lr_rampup_kimg * 1000, 1))
            with autocast:
                loss, stats = step_loss(config, state, model, local, images=images, labels=labels, **tensors)
            loss_value = dist_utils.all_reduce_mean(loss.detach(), ctx)
            if not math.isfinite(float(loss_value)):
                kept = (f"the last good checkpoint in {run_dir} was kept" if ckpt_path.exists()
                        else "no checkpoint had been written yet")
                raise TrainingDiverged(
                    f"loss became {float(loss_value)} at kimg {state.nimg / 1000:.1f} (step {state.step}); "
                    f"stopped, {kept} — lower `lr` or check the data")
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(state.net.parameters(), config.grad_clip)
            state.optimizer.step()
            state.nimg += config.batch_size
            state.step += 1
            steps_this_call += 1
            ema_update(state, config, config.batch_size)
            for key, v in stats.items():
                acc_stats.setdefault(key, []).append(v)
            bar.update(state.step, loss=float(loss_value), kimg=state.nimg / 1000)

            if state.step % log_every == 0 or state.step == total_steps:
                record = {"kimg": state.nimg / 1000, "step": state.step,
                          "sec": time.perf_counter() - t_start,
                          **{k: float(np.mean(v)) for k, v in acc_stats.items()}}
                acc_stats = {}
                if stats_file:
                    stats_file.write(json.dumps(record) + "\n")
                    stats_file.flush()
            if ctx.is_main and (state.step % ckpt_every == 0 or state.step == total_steps):
                save_checkpoint(ckpt_path, state.state_dict(config))
    finally:
        bar.close()
        if stats_file:
            stats_file.close()

    elapsed = time.perf_counter() - t_start
    summary = {"steps": state.step, "kimg": state.nimg / 1000, "seconds_this_call": elapsed,
               "finished": state.step >= total_steps, "stopped_by_time_budget": budget_hit,
               "temperature": state.temperature, "posterior": state.posterior.to_dict()}
    if state.transition is not None and config.method == "dmis" and config.transition == "estimate":
        # noisy labels: how many of them the run's estimated T says are wrong (label-free; README)
        summary["estimated_noise_rate"] = estimated_noise_rate(
            labels, np.flatnonzero(label_rows(labels.num_samples, validation).numpy()), state.transition.numpy())
    if labels.kind == "pu":  # the share of positives the run used; the stored one only as a diagnostic
        summary["pu_prior"] = float(state.log_prior.exp()[1] / state.log_prior.exp().sum())
        if labels.class_prior is not None:
            summary["pu_prior_stored"] = float(labels.class_prior[1])
    if ctx.is_main and (state.step >= total_steps or budget_hit):
        if len(validation):
            scored, lik, shared_lik = scoring_labels(labels, tensors["lik"], config)
            summary["validation"] = score_validation(
                state.ema, state.posterior, temperature=state.temperature, log_prior=state.log_prior, images=images,
                lik=lik, labels=scored, validation=validation, seed=config.seed, shared_lik=shared_lik,
                heldout_t=config.assumed_noise_rate)
        if test_data is not None and test_targets is not None:
            test_images = to_model_space(test_data.images).to(device)
            summary["test_accuracy_ema"] = _evaluate_quick(state.ema, state, test_images, test_targets)
            summary["test_posterior"] = inference_posterior(state).to_dict()
            # The same model with the table's one draw per level, for comparison (README).
            summary["test_accuracy_ema_one_draw"] = _evaluate_quick(state.ema, state, test_images, test_targets,
                                                                    draws=1)
        if config.samples_per_class > 0:
            imgs, _ = sample_per_class(state.ema, per_class=config.samples_per_class, seed=config.seed,
                                       device=device)
            save_png(image_grid(imgs, rows=num_classes), run_dir / SAMPLES_NAME, upscale=4)
        training_curves(run_dir / STATS_NAME, run_dir / CURVES_NAME)
        atomic_write_text(run_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return summary
