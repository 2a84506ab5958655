"""Attention figures: one head, all heads of a layer, a layers x heads overview, and one query's
raw scores beside its softmax weights (Vaswani et al., 2017, eq. 1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stmem_viz.plots.common import pool_matrix, safe_label, tick_step, token_labels

COLORSCALE = "Blues"
MAX_CELLS = 400


def _axis_ticks(labels: Sequence[str], block: int) -> dict:
    """Tick positions and texts for an axis of (possibly pooled) token cells."""
    n_cells = -(-len(labels) // block)
    step = tick_step(n_cells)
    values = list(range(0, n_cells, step))
    if block == 1:
        texts = [labels[v] for v in values]
    else:
        texts = [f"{labels[v * block]} …" for v in values]
    return {"tickmode": "array", "tickvals": values, "ticktext": texts}


def attention_heatmap(
    matrix: np.ndarray,
    query_tokens: Sequence[str],
    key_tokens: Sequence[str],
    title: str = "",
    query_indices: Sequence[int] | None = None,
    key_indices: Sequence[int] | None = None,
    zmax: float | None = None,
    max_cells: int = MAX_CELLS,
) -> go.Figure:
    """Heatmap of one attention matrix, queries down, keys across.

    Args:
        matrix: [query, key] weights.
        query_tokens, key_tokens: token texts (shown literally).
        query_indices, key_indices: original positions, when tokens were hidden.
        max_cells: longer inputs are pooled into blocks (see ``pool_matrix``) and the title says so.
    """
    q_labels = token_labels(query_tokens, query_indices)
    k_labels = token_labels(key_tokens, key_indices)
    shown, block = pool_matrix(np.asarray(matrix, dtype=np.float32), max_cells)
    if block > 1:
        title = f"{title} (pooled {block}x{block} token blocks)".strip()
        hover = "queries from %{y}<br>keys from %{x}<br>weight %{z:.4f}<extra></extra>"
        x, y = list(range(shown.shape[1])), list(range(shown.shape[0]))
        customdata = None
    else:
        hover = "query %{customdata[0]}<br>key %{customdata[1]}<br>weight %{z:.4f}<extra></extra>"
        x, y = list(range(len(k_labels))), list(range(len(q_labels)))
        customdata = np.dstack(np.meshgrid(k_labels, q_labels)[::-1])
    figure = go.Figure(
        go.Heatmap(
            z=shown,
            x=x,
            y=y,
            customdata=customdata,
            colorscale=COLORSCALE,
            zmin=0.0,
            zmax=zmax if zmax is not None else float(np.nanmax(shown)) or 1.0,
            hovertemplate=hover,
            colorbar={"title": {"text": "weight"}},
        )
    )
    side = max(360, min(900, 14 * shown.shape[0] + 160))
    figure.update_layout(
        title={"text": safe_label(title)},
        height=side,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={**_axis_ticks(k_labels, block), "title": {"text": "key"}, "side": "bottom"},
        yaxis={**_axis_ticks(q_labels, block), "title": {"text": "query"}, "autorange": "reversed"},
    )
    return figure


def head_grid(
    weights: np.ndarray,
    tokens: Sequence[str],
    key_tokens: Sequence[str] | None = None,
    title: str = "",
    columns: int = 4,
    max_cells: int = 128,
) -> go.Figure:
    """All heads of one layer as small multiples on one colour scale.

    Args:
        weights: [heads, query, key].
    """
    n_heads = weights.shape[0]
    rows = -(-n_heads // columns)
    cols = min(columns, n_heads)
    figure = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[f"head {h}" for h in range(n_heads)],
        horizontal_spacing=0.02,
        vertical_spacing=0.06 if rows > 1 else 0.1,
    )
    zmax = float(np.nanmax(weights)) or 1.0
    for h in range(n_heads):
        pooled, _ = pool_matrix(np.asarray(weights[h], dtype=np.float32), max_cells)
        figure.add_trace(
            go.Heatmap(
                z=pooled,
                coloraxis="coloraxis",
                hovertemplate=f"head {h}<br>query %{{y}}<br>key %{{x}}<br>weight %{{z:.4f}}"
                "<extra></extra>",
            ),
            row=h // cols + 1,
            col=h % cols + 1,
        )
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False, autorange="reversed")
    figure.update_layout(
        title={"text": safe_label(title)},
        coloraxis={"colorscale": COLORSCALE, "cmin": 0.0, "cmax": zmax},
        height=max(260, 210 * rows + 60),
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
    )
    return figure


def layer_head_overview(table: pd.DataFrame, metric: str, title: str = "") -> go.Figure:
    """A layers x heads heatmap of one head metric (a column of the head table)."""
    grid = table.pivot_table(index="layer", columns="head", values=metric, aggfunc="mean")
    figure = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[str(h) for h in grid.columns],
            y=[str(layer) for layer in grid.index],
            colorscale="Viridis",
            colorbar={"title": {"text": metric}},
            hovertemplate="layer %{y}, head %{x}<br>" + metric + " %{z:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        title={"text": safe_label(title or metric)},
        xaxis={"title": {"text": "head"}, "type": "category"},
        yaxis={"title": {"text": "layer"}, "type": "category", "autorange": "reversed"},
        height=max(260, 40 * len(grid.index) + 120),
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return figure


def query_scores(
    scores: np.ndarray | None,
    weights: np.ndarray,
    key_tokens: Sequence[str],
    query_label: str,
    max_keys: int = 96,
) -> go.Figure:
    """One query's raw scores e_ij = q_i . k_j / sqrt(d) beside alpha_ij = softmax_j(e_ij).

    Args:
        scores: [key] raw scores with masked keys as -inf, or None when the model gave none.
        weights: [key] softmax weights.
        max_keys: longer rows show only the keys with the most weight, in position order.
    """
    positions = np.arange(len(key_tokens))
    title = f"query {safe_label(query_label)}"
    if len(positions) > max_keys:
        positions = np.sort(np.argsort(-np.asarray(weights), kind="stable")[:max_keys])
        title += f" (the {max_keys} keys with the most weight, of {len(key_tokens)})"
        weights = np.asarray(weights)[positions]
        scores = None if scores is None else np.asarray(scores)[positions]
    labels = token_labels([key_tokens[j] for j in positions], positions.tolist())
    panels = 2 if scores is not None else 1
    figure = make_subplots(
        rows=1,
        cols=panels,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=(
            ["raw score e_ij = q_i · k_j / √d", "weight α_ij = softmax_j(e_ij)"][-panels:]
        ),
    )
    y = list(range(len(labels)))
    if scores is not None:
        masked = ~np.isfinite(scores)
        shown = np.where(masked, 0.0, scores)
        figure.add_trace(
            go.Bar(
                x=shown,
                y=y,
                orientation="h",
                marker_color=np.where(masked, "#cccccc", "#d62728").tolist(),
                customdata=np.where(masked, "masked", np.char.mod("%.4f", shown)),
                hovertemplate="%{customdata}<extra></extra>",
                name="e_ij",
            ),
            row=1,
            col=1,
        )
        for j in np.flatnonzero(masked):
            figure.add_annotation(
                x=0,
                y=int(j),
                text="masked",
                showarrow=False,
                xanchor="left",
                row=1,
                col=1,
                font={"color": "#888888", "size": 10},
            )
    figure.add_trace(
        go.Bar(
            x=weights,
            y=y,
            orientation="h",
            marker_color="#1f77b4",
            hovertemplate="%{x:.4f}<extra></extra>",
            name="α_ij",
        ),
        row=1,
        col=panels,
    )
    figure.update_yaxes(
        tickmode="array", tickvals=y, ticktext=labels, autorange="reversed", row=1, col=1
    )
    figure.update_layout(
        title={"text": title},
        showlegend=False,
        height=max(300, 18 * len(labels) + 120),
        margin={"l": 10, "r": 10, "t": 70, "b": 10},
    )
    return figure
