"""Figures of forgetting curves: recall against distance with 95% CI bands, fitted curves and
half-life markers; length x depth heatmaps (Kamradt's needle-in-a-haystack layout); loss by
position (Olsson et al., 2022).

Distances are drawn on a ``log(1 + d)`` axis whose ticks show ``d`` itself, so that ``d = 0``
stays visible next to ``d = 128``. Every function takes pandas tables from
:mod:`stmem_viz.analysis.forgetting` and returns a plotly figure; none runs a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from stmem_viz.plots.common import safe_label

PALETTE = qualitative.Plotly

METRIC_TITLES = {
    "correct": "accuracy",
    "prob": "probability of the answer",
    "nll": "NLL of the answer (nats)",
    "benefit": "copy benefit (share of the control's loss removed)",
    "delta_nll": "NLL of the copy minus control (nats)",
    "copy_accuracy": "copied tokens predicted exactly",
    "cosine": "cosine of a slot with itself",
}


def log1p_ticks(values: Sequence[float], max_ticks: int = 12) -> tuple[list[float], list[str]]:
    """Tick positions on the ``log(1 + d)`` axis and labels showing ``d``.

    Uses the grid values themselves when there are few, else powers of two (and 0).
    """
    values = sorted({float(v) for v in values})
    if len(values) > max_ticks:
        top = max(values)
        values = [0.0] + [2.0**k for k in range(int(math.log2(max(top, 1))) + 1)]
    return [math.log1p(v) for v in values], [f"{v:g}" for v in values]


def _rgba(colour: str, alpha: float) -> str:
    colour = colour.lstrip("#")
    r, g, b = (int(colour[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _band(x: np.ndarray, low: np.ndarray, high: np.ndarray, colour: str, name: str) -> go.Scatter:
    keep = np.isfinite(low) & np.isfinite(high)
    x, low, high = x[keep], low[keep], high[keep]
    return go.Scatter(
        x=np.concatenate([x, x[::-1]]),
        y=np.concatenate([high, low[::-1]]),
        fill="toself",
        fillcolor=_rgba(colour, 0.18),
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        legendgroup=name,
        name=f"{name} 95% CI",
    )


def curve_figure(
    summary: pd.DataFrame,
    x: str,
    metric: str,
    fitted: pd.DataFrame | None = None,
    fits: pd.DataFrame | None = None,
    chance: float | None = None,
    x_title: str | None = None,
    title: str | None = None,
    log_x: bool = True,
) -> go.Figure:
    """Recall against distance, one line per model, with its 95% CI band.

    Args:
        summary: per model and ``x``: ``{metric}_mean``, ``{metric}_low``, ``{metric}_high``.
        x: the distance column.
        metric: the metric to draw (e.g. "correct", "prob").
        fitted: optional dense fitted curves (``model``, ``metric``, ``x``, ``fitted``).
        fits: optional fit table; its ``half_life`` (with CI) is marked on each curve.
        chance: optional floor drawn as a dotted line.
        x_title: axis title (default: ``x``).
        title: figure title.
        log_x: draw ``x`` on a ``log(1 + x)`` axis.

    Returns:
        The figure.
    """
    transform = np.log1p if log_x else (lambda v: np.asarray(v, dtype=float))
    figure = go.Figure()
    models = list(dict.fromkeys(summary["model"]))
    for i, model in enumerate(models):
        colour = PALETTE[i % len(PALETTE)]
        label = safe_label(model)
        part = summary[summary.model == model].sort_values(x)
        xs = transform(part[x].to_numpy(dtype=float))
        mean = part[f"{metric}_mean"].to_numpy(dtype=float)
        low = part[f"{metric}_low"].to_numpy(dtype=float)
        high = part[f"{metric}_high"].to_numpy(dtype=float)
        figure.add_trace(_band(xs, low, high, colour, label))
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=mean,
                mode="lines+markers",
                name=label,
                legendgroup=label,
                line={"color": colour},
                customdata=np.stack([part[x].to_numpy(dtype=float), low, high], axis=1),
                hovertemplate=(
                    f"{label}<br>{x} %{{customdata[0]:g}}<br>{metric} %{{y:.3f}} "
                    "[%{customdata[1]:.3f}, %{customdata[2]:.3f}]<extra></extra>"
                ),
            )
        )
        _add_fit(figure, fitted, fits, model, metric, x, transform, colour, label)
    if chance is not None and math.isfinite(chance):
        figure.add_hline(
            y=chance,
            line={"dash": "dot", "color": "grey"},
            annotation_text=f"chance {chance:.2f}",
            annotation_position="bottom right",
        )
    grid = summary[x].to_numpy(dtype=float) if len(summary) else np.array([0.0])
    axis = {"title": x_title or x}
    if log_x:
        tickvals, ticktext = log1p_ticks(grid)
        axis |= {"tickvals": tickvals, "ticktext": ticktext}
    figure.update_layout(
        title=title,
        xaxis=axis,
        yaxis={"title": METRIC_TITLES.get(metric, metric)},
        legend={"orientation": "h", "y": -0.2},
        margin={"l": 60, "r": 20, "t": 50, "b": 60},
        height=440,
    )
    return figure


def _add_fit(figure, fitted, fits, model, metric, x, transform, colour, label) -> None:
    """The dashed fitted curve and a diamond at the half-life, if fitted."""
    if fitted is None or fitted.empty:
        return
    curve = fitted[(fitted.model == model) & (fitted.metric == metric)]
    if curve.empty:
        return
    figure.add_trace(
        go.Scatter(
            x=transform(curve[x].to_numpy(dtype=float)),
            y=curve["fitted"],
            mode="lines",
            line={"color": colour, "dash": "dash", "width": 1.5},
            name=f"{label} fit",
            legendgroup=label,
            showlegend=False,
            hoverinfo="skip",
        )
    )
    if fits is None or fits.empty:
        return
    row = fits[(fits.model == model) & (fits.metric == metric)]
    if row.empty or not np.isfinite(row.half_life.iloc[0]):
        return
    half = float(row.half_life.iloc[0])
    at = np.interp(half, curve[x].to_numpy(dtype=float), curve["fitted"].to_numpy(dtype=float))
    low, high = row.half_life_low.iloc[0], row.half_life_high.iloc[0]
    ci = f"[{low:.3g}, {high:.3g}]" if np.isfinite(low) and np.isfinite(high) else "[CI open]"
    figure.add_trace(
        go.Scatter(
            x=transform(np.array([half])),
            y=[at],
            mode="markers",
            marker={"symbol": "diamond", "size": 12, "color": colour, "line": {"width": 1}},
            name=f"{label} half-life",
            legendgroup=label,
            showlegend=False,
            hovertemplate=f"{label}<br>half-life {half:.3g} {ci}<extra></extra>",
        )
    )


def heatmap_figure(
    summary: pd.DataFrame,
    metric: str = "correct",
    x: str = "length",
    y: str = "depth",
    x_title: str = "length",
    title: str | None = None,
) -> go.Figure:
    """One heatmap per model: ``metric`` over ``x`` (length) and ``y`` (depth, in %).

    Args:
        summary: per model, ``x`` and ``y``: ``{metric}_mean`` (and ``n``).
        metric: the metric coloured (0-1 scale).
    """
    models = list(dict.fromkeys(summary["model"]))
    figure = make_subplots(
        rows=1,
        cols=max(len(models), 1),
        subplot_titles=[safe_label(m) for m in models] or [""],
        shared_yaxes=True,
        horizontal_spacing=0.04,
    )
    for i, model in enumerate(models):
        part = summary[summary.model == model]
        table = part.pivot_table(index=y, columns=x, values=f"{metric}_mean", aggfunc="mean")
        table = table.sort_index(ascending=True)
        figure.add_trace(
            go.Heatmap(
                z=table.to_numpy(),
                x=[f"{v:g}" for v in table.columns],
                y=[f"{100 * v:.0f}%" for v in table.index],
                zmin=0,
                zmax=1,
                colorscale="RdYlGn",
                showscale=i == len(models) - 1,
                colorbar={"title": METRIC_TITLES.get(metric, metric)},
                texttemplate="%{z:.2f}",
                hovertemplate=(
                    f"{safe_label(model)}<br>{x} %{{x}}<br>depth %{{y}}<br>"
                    f"{metric} %{{z:.3f}}<extra></extra>"
                ),
            ),
            row=1,
            col=i + 1,
        )
        figure.update_xaxes(title_text=x_title, type="category", row=1, col=i + 1)
    figure.update_yaxes(title_text="fact depth (0% = first)", type="category", row=1, col=1)
    figure.update_layout(title=title, height=420, margin={"l": 60, "r": 20, "t": 70, "b": 50})
    return figure


def position_figure(summary: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Mean next-token NLL by position (log axis) with 95% CI bands, one line per model."""
    return curve_figure(
        summary,
        "position",
        "nll",
        x_title="token position",
        title=title,
        log_x=True,
    ).update_yaxes(title_text="next-token NLL (nats)")
