"""What the analyses put in their reports besides values: figures (PNG) and Markdown tables.

matplotlib is imported when a figure is first made, so tasks without figures (and the check-only
runs) never pay for it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def new_figure(width: float, height: float):
    """A matplotlib figure on the Agg canvas: no pyplot state, no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def quadrant_axes(keys: Sequence[tuple[int, str]]):
    """A one-panel figure with a place per (CCD, quadrant) along x: (figure, axes, x positions)."""
    figure = new_figure(8, 3.6)
    axes = figure.add_subplot(1, 1, 1)
    x = np.arange(len(keys))
    axes.set_xticks(x, [f"CCD{c}\n{q}" for c, q in keys], fontsize=8)
    return figure, axes, x


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
