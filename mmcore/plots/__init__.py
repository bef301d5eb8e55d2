"""Plots from run and sweep directories (``mmcore plot``); matplotlib is the optional ``plots`` extra.

``mmcore plot missing DIR``: metric vs missing rate, from a sweep's ``summary.json`` (one line per
variant with a ±std band) or a run's ``missing_rates.json``. ``mmcore plot curves RUN``: train
and validation curves from ``metrics.jsonl``. ``mmcore plot ot-plan RUN --sample i [--pair m]``:
the aligner's alignment plan for test sample ``i`` as a heatmap. Figures are drawn on an Agg
canvas without pyplot, so the process-wide matplotlib backend is never changed.

Alignment-plan protocol (for aligner authors)
---------------------------------------------
An aligner that can show its plans implements::

    def alignment_plans(self) -> dict[str, Tensor]:
        '''{modality: plan (B, T_anchor, T_m)} of the most recent forward call.'''

``plan[b, i, j]`` is the mass (OT plan, attention weight, ...) that anchor token ``i`` of row
``b`` sends to frame ``j`` of modality ``m``. The anchor is the modality the others are aligned
to: the aligner's ``anchor`` attribute (a modality name) when it has one, else the one
pipeline modality that has no plan (e.g. ``text`` for plans ``{"audio": ..., "vision": ...}``).
Entries at padded positions are ignored (the plot shows valid rows and columns only). Keep the
plans detached (``self._plans = {m: P.detach()}``) so storing them costs no memory in backward;
the plot calls the method right after a forward under ``torch.no_grad()``. An aligner without
this method makes ``mmcore plot ot-plan`` fail with a message listing the aligners that have it.
"""

from __future__ import annotations

from .curves import plot_curves as plot_curves
from .missing import plot_missing as plot_missing
from .ot_plan import plot_ot_plan as plot_ot_plan
from .ot_plan import sample_plans as sample_plans

__all__ = ["plot_curves", "plot_missing", "plot_ot_plan", "sample_plans"]
