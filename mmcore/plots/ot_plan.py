"""``mmcore plot ot-plan``: the alignment plan of a run's aligner on one test sample, as a heatmap.

The run is rebuilt with :func:`mmcore.train.run.load_run` (best weights), test sample ``i`` goes
through the spec's eval protocol (the same masks evaluation used) and the model, and the
aligner's :meth:`alignment_plans` (see :mod:`mmcore.plots`) is read and cropped to the valid
positions of both sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import capabilities
from ..errors import MmcoreUserError, PluginError
from ._mpl import new_figure, save

PROTOCOL = "alignment_plans"


@dataclass
class PlanView:
    """One plan of one sample, cropped to valid positions.

    plan: (n_anchor, n_m) float array (numpy); anchor: the anchor modality (None if unknown);
    masked_anchor / masked_m: positions removed by the missing protocol (still drawn);
    missing: the modality is absent for this sample.
    """

    modality: str
    anchor: str | None
    plan: object
    masked_anchor: list[int]
    masked_m: list[int]
    missing: bool


def aligners_with_plans(registry) -> tuple[list[str], list[str]]:
    """(registered aligners whose class has ``alignment_plans``, aligners that could not be imported)."""
    have, unknown = [], []
    for entry in registry.entries("aligner"):
        try:
            cls = entry.load()
        except ImportError:  # a lazily imported plugin class that fails to import: say so, do not guess
            unknown.append(entry.name)
            continue
        if capabilities.alignment_plans(cls) is not None:
            have.append(entry.name)
    return have, unknown


def _unsupported(name: str, registry) -> MmcoreUserError:
    from ..registry import KNOWN_PROVIDERS, provider_hint

    have, unknown = aligners_with_plans(registry)
    hints = [f"aligners installed here that expose plans: {', '.join(have) if have else '(none)'}"]
    ot = sorted(n for (k, n), dist in KNOWN_PROVIDERS.items()
                if k == "aligner" and dist == "mmcore-plugin-ot" and registry.find("aligner", n) is None)
    if ot:
        hints.append(provider_hint("aligner", ot, "mmcore-plugin-ot"))
    if unknown:
        hints.append(f"could not import (not checked): {', '.join(unknown)}")
    hints.append(f"an aligner shows plans by implementing {PROTOCOL}(self) -> {{modality: (B, T_anchor, T_m)}}; "
                 "see docs/sweeps.md")
    return MmcoreUserError.at(f"aligner {name!r}", f"it has no alignment plans to draw (no {PROTOCOL}() method)", hints)


def sample_plans(run_dir: str, sample: int, pair: str | None = None) -> tuple[str, list[PlanView]]:
    """Run test ``sample`` of the run in ``run_dir`` and return (aligner name, its plans).

    Raises: MmcoreUserError for a bad sample index, an aligner without plans, or an unknown
    ``pair``; PluginError if the aligner's plans do not have the documented shape.
    """
    import torch

    from ..train.run import load_run

    trainer = load_run(run_dir)
    name = trainer.spec.aligner.name
    aligner = trainer.model.aligner
    read_plans = capabilities.alignment_plans(aligner)
    if read_plans is None:
        raise _unsupported(name, trainer.rs.registry or _registry())
    split = trainer.data.split("test")
    if not 0 <= sample < len(split):
        raise MmcoreUserError.at(f"--sample {sample}", f"the test split of {run_dir} has {len(split)} samples "
                                 f"(0..{len(split) - 1})")
    batch = split.batch(torch.tensor([sample])).to(trainer.device)
    batch = trainer.eval_protocol.apply(batch, seed=trainer.spec.seed, epoch=None, split="test")
    trainer.model.eval()
    with torch.no_grad():
        trainer.model(batch)
        plans = read_plans()
    if not isinstance(plans, dict) or not plans:
        raise PluginError(f"aligner {name!r}: {PROTOCOL}() returned {type(plans).__name__}, expected a non-empty "
                          "{modality: (B, T_anchor, T_m) tensor} dict for the last forward")
    all_plans = plans
    if pair is not None:
        if pair not in plans:
            raise MmcoreUserError.at(f"--pair {pair}", f"aligner {name!r} has plans for {', '.join(plans)} only")
        plans = {pair: plans[pair]}
    mods = list(trainer.spec.modalities)
    anchor = capabilities.anchor(aligner)
    if anchor is None:  # the one modality without a plan is the one the others are aligned to
        rest = [m for m in mods if m not in all_plans]
        anchor = rest[0] if len(rest) == 1 else None
    elif anchor not in batch.valid:
        raise PluginError(f"aligner {name!r}: its anchor {anchor!r} is not a modality of this pipeline "
                          f"({', '.join(mods)})")
    views = []
    for m, plan in plans.items():
        if m not in batch.valid:
            raise PluginError(f"aligner {name!r}: {PROTOCOL}() has a plan for {m!r}, which is not a modality "
                              f"of this pipeline ({', '.join(mods)})")
        T_m = batch.valid[m].shape[1]
        T_a = batch.valid[anchor].shape[1] if anchor else plan.shape[1]
        if plan.dim() != 3 or plan.shape[0] != 1 or plan.shape[2] != T_m or plan.shape[1] != T_a:
            raise PluginError(f"aligner {name!r}: plan for {m!r} must have shape (B=1, T_anchor={T_a}, T_m={T_m}) "
                              f"for one sample; got {tuple(plan.shape)}")
        rows = int(batch.valid[anchor][0].sum()) if anchor else T_a
        cols = int(batch.valid[m][0].sum())
        views.append(PlanView(
            m, anchor, plan[0, :rows, :cols].detach().float().cpu().numpy(),  # (n_anchor, n_m) valid part
            masked_anchor=torch.nonzero(batch.masked[anchor][0, :rows]).flatten().tolist() if anchor else [],
            masked_m=torch.nonzero(batch.masked[m][0, :cols]).flatten().tolist(),
            missing=bool(batch.missing[m][0])))
    return name, views


def _registry():
    from ..registry import get_registry

    return get_registry()


def plot_ot_plan(run_dir: str, sample: int, pair: str | None = None, output: str | None = None) -> str:
    """Draw the plans of test ``sample`` (one panel per modality); returns the PNG path."""
    import os

    name, views = sample_plans(run_dir, sample, pair)
    fig = new_figure(4.6 * len(views) + 0.6, 4.4)
    for k, v in enumerate(views):
        ax = fig.add_subplot(1, len(views), k + 1)
        im = ax.imshow(v.plan, aspect="auto", origin="upper", cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_ylabel(f"{v.anchor or 'anchor'} tokens")
        ax.set_xlabel(f"{v.modality} frames")
        for i in v.masked_anchor:
            ax.axhline(i, color="white", linewidth=0.6, linestyle=":")
        for j in v.masked_m:
            ax.axvline(j, color="white", linewidth=0.6, linestyle=":")
        note = " (missing for this sample)" if v.missing else ""
        ax.set_title(f"{v.anchor or 'anchor'} <- {v.modality}{note}", fontsize="medium")
    masked = any(v.masked_anchor or v.masked_m for v in views)
    fig.suptitle(f"{name} alignment plan, test sample {sample}"
                 + (" (dotted: tokens masked by the eval protocol)" if masked else ""), fontsize="medium")
    suffix = f"_{pair}" if pair else ""
    return save(fig, output or os.path.join(run_dir, f"ot_plan_sample{sample}{suffix}.png"))
