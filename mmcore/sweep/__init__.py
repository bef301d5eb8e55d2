"""Sweeps: a grid of variants x seeds (x missing rates), trained resumably, then tabulated and plotted.

``mmcore sweep SPEC --grid aligner.name=relaxed_ot,identity --seeds 5 --missing-rates 0,0.3,0.5``
trains every cell into ``OUT/cells/<variant>/seed<k>/`` (a normal run directory), records the
grid in ``OUT/sweep.json`` and writes ``OUT/summary.{md,csv,json}`` and a plot:
``OUT/missing_rates.png`` (metric vs rate) or, without rates, ``OUT/test_by_variant.png``.
See docs/sweeps.md.
"""

from __future__ import annotations

from .grid import Cell as Cell
from .grid import SweepError as SweepError
from .grid import Variant as Variant
from .grid import build_variants as build_variants
from .run import SweepInterrupted as SweepInterrupted
from .run import SweepResult as SweepResult
from .run import print_result as print_result
from .run import run_sweep as run_sweep

__all__ = ["Cell", "SweepError", "SweepInterrupted", "SweepResult", "Variant", "build_variants", "print_result", "run_sweep"]
