"""matplotlib access without global state: figures drawn on an Agg canvas, never through pyplot.

Why not ``matplotlib.use("Agg")`` + pyplot: that switches the backend of the whole process (a
user's notebook included); a bare :class:`~matplotlib.figure.Figure` with a ``FigureCanvasAgg``
renders PNGs headless and leaves the user's pyplot state alone.
"""

from __future__ import annotations

import os

from ..errors import MmcoreUserError

INSTALL_HINT = "pip install 'mmcore-lib[plots]' (in a checkout: pip install -c constraints.txt -e '.[plots]')"


class PlotDependencyError(MmcoreUserError):
    """matplotlib (the optional ``plots`` extra) is not installed."""


def _missing(e: ImportError) -> PlotDependencyError:
    return PlotDependencyError.at("plots", f"matplotlib is not installed ({e})",
                                  (f"hint: install the plots extra: {INSTALL_HINT}",))


def require_matplotlib() -> None:
    """Raise :class:`PlotDependencyError` now if matplotlib cannot be imported.

    Why: ``mmcore plot`` calls it before loading a run's data and model, so a missing extra
    costs a second rather than the time it takes to rebuild the model.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise _missing(e) from None


def new_figure(width: float = 6.4, height: float = 4.2):
    """A figure on an Agg canvas; raises :class:`PlotDependencyError` without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise _missing(e) from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: str) -> str:
    """Write ``fig`` as PNG to ``path`` (directories created); returns the path."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
