"""Training curves: loss and validation accuracy against the optimisation step."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def training_curves(history: Sequence) -> go.Figure:
    """Loss (left) and validation accuracy (right) from a trainer's progress reports.

    Args:
        history: reports with ``step``, ``loss`` and ``val_accuracy`` (None where not measured).
    """
    steps = [r.step for r in history]
    figure = make_subplots(rows=1, cols=2, subplot_titles=["training loss", "validation accuracy"])
    figure.add_trace(
        go.Scatter(x=steps, y=[r.loss for r in history], mode="lines+markers", name="loss"),
        row=1,
        col=1,
    )
    measured = [r for r in history if r.val_accuracy is not None]
    figure.add_trace(
        go.Scatter(
            x=[r.step for r in measured],
            y=[r.val_accuracy for r in measured],
            mode="lines+markers",
            name="validation accuracy",
        ),
        row=1,
        col=2,
    )
    figure.update_yaxes(range=[0, 1.02], row=1, col=2)
    figure.update_xaxes(title_text="step")
    figure.update_layout(height=320, showlegend=False, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure
