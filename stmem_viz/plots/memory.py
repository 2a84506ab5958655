"""Memory-network figures: slot states, gates, the write timeline, slot/entity similarity, hop
attention, recall over time and ablations.

The networks are the Recurrent Entity Network (Henaff et al., 2017) and the end-to-end memory
network (Sukhbaatar et al., 2015). Every builder takes numpy arrays and texts and returns a
plotly figure; sentence and word texts pass through :func:`safe_label` so they show literally.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from stmem_viz.plots.common import safe_label, tick_step

STATE_SCALE = "RdBu_r"
CHANGE_SCALE = "PuOr_r"
WEIGHT_SCALE = "Blues"
SUPPORT_MARK = "★"
MAX_LABEL = 48
HIGHLIGHT = "#d62728"
BASE_COLOUR = "#1f77b4"
ABLATED_COLOUR = "#ff7f0e"

_MARGIN = {"l": 10, "r": 10, "t": 60, "b": 10}
_TOP_AXIS_MARGIN = {"l": 10, "r": 10, "t": 100, "b": 10}


def _short(text: str, limit: int = MAX_LABEL) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sentence_labels(
    sentences: Sequence[str],
    support: Sequence[int] = (),
    in_memory: Sequence[bool] | None = None,
) -> list[str]:
    """Axis labels ``"i: sentence"`` (1-based), escaped and shortened to :data:`MAX_LABEL`.

    Args:
        sentences: the sentences.
        support: 0-based indexes of supporting facts; their labels start with :data:`SUPPORT_MARK`.
        in_memory: optional ``[S]`` flags; sentences outside the memory get "(out)" appended.
    """
    marked = set(int(i) for i in support)
    labels = []
    for i, text in enumerate(sentences):
        label = f"{SUPPORT_MARK} " if i in marked else ""
        label += f"{i + 1}: {safe_label(_short(text))}"
        if in_memory is not None and not in_memory[i]:
            label += " (out)"
        labels.append(label)
    return labels


def _sentence_axis(labels: Sequence[str]) -> dict:
    step = tick_step(len(labels), max_ticks=80)
    values = list(range(0, len(labels), step))
    return {
        "tickmode": "array",
        "tickvals": values,
        "ticktext": [labels[v] for v in values],
        "autorange": "reversed",
        "automargin": True,
    }


def _height(rows: int, per_row: int = 16, extra: int = 140, low: int = 260, high: int = 1400):
    return int(max(low, min(high, per_row * rows + extra)))


def slot_state_heatmaps(before: np.ndarray, after: np.ndarray, step_label: str = "") -> go.Figure:
    """Slot states before and after one write, and their difference.

    Before and after share one symmetric colour scale; the difference has its own symmetric
    diverging scale (a second colour bar) because one write moves states by far less than
    their range.

    Args:
        before: ``[N, D]`` slot states before the sentence.
        after: ``[N, D]`` slot states after it.
        step_label: the sentence, for the title.

    Returns:
        Three stacked heatmaps, slots down, dimensions across.
    """
    before = np.asarray(before, dtype=np.float32)
    after = np.asarray(after, dtype=np.float32)
    change = after - before
    n, d = before.shape
    state_max = float(max(np.abs(before).max(), np.abs(after).max())) or 1.0
    change_max = float(np.abs(change).max()) or 1.0
    slots = list(range(n))
    dims = list(range(d))
    panels = [
        ("before the write", before, "coloraxis"),
        ("after the write", after, "coloraxis"),
        ("difference after − before (own scale)", change, "coloraxis2"),
    ]
    gap = 0.06
    size = (1 - 2 * gap) / 3
    traces, layout = [], {}
    for k, (name, values, axis) in enumerate(panels):
        suffix = "" if k == 0 else str(k + 1)
        traces.append(
            go.Heatmap(
                z=values,
                x=dims,
                y=slots,
                coloraxis=axis,
                xaxis=f"x{suffix}",
                yaxis=f"y{suffix}",
                name=name,
                hovertemplate=f"{name}<br>slot %{{y}}, dim %{{x}}<br>%{{z:.4f}}<extra></extra>",
            )
        )
        top = 1 - k * (size + gap)
        layout[f"yaxis{suffix}"] = {
            "domain": [top - size, top],
            "autorange": "reversed",
            "title": {"text": "slot"},
            "anchor": f"x{suffix}",
        }
        layout[f"xaxis{suffix}"] = {
            "anchor": f"y{suffix}",
            "title": {"text": "dimension" if k == 2 else ""},
            "showticklabels": k == 2,
        }
    annotations = [
        {
            "text": name,
            "xref": "paper",
            "yref": "paper",
            "x": 0,
            "y": 1 - k * (size + gap),
            "xanchor": "left",
            "yanchor": "bottom",
            "showarrow": False,
        }
        for k, (name, _, _) in enumerate(panels)
    ]
    title = "Slot states" + (f" — {safe_label(step_label)}" if step_label else "")
    layout.update(
        title={"text": title},
        annotations=annotations,
        coloraxis={
            "colorscale": STATE_SCALE,
            "cmin": -state_max,
            "cmax": state_max,
            "colorbar": {"title": {"text": "state"}, "y": 1, "yanchor": "top", "len": 0.62},
        },
        coloraxis2={
            "colorscale": CHANGE_SCALE,
            "cmin": -change_max,
            "cmax": change_max,
            "colorbar": {"title": {"text": "change"}, "y": 0, "yanchor": "bottom", "len": 0.3},
        },
        height=_height(3 * n, per_row=12, extra=220, low=420, high=1100),
        margin=_MARGIN,
    )
    return go.Figure(data=traces, layout=layout)


def gate_bars(gates: np.ndarray, step_label: str = "") -> go.Figure:
    """The gate ``g_j`` of every slot for one sentence. ``gates``: ``[N]`` in (0, 1)."""
    gates = np.asarray(gates, dtype=np.float32)
    data = [
        go.Bar(
            x=list(range(len(gates))),
            y=gates,
            marker_color=BASE_COLOUR,
            hovertemplate="slot %{x}<br>gate %{y:.4f}<extra></extra>",
        )
    ]
    title = "Write gate per slot" + (f" — {safe_label(step_label)}" if step_label else "")
    return go.Figure(
        data=data,
        layout=dict(
            title={"text": title},
            xaxis={"title": {"text": "slot"}, "dtick": 1},
            yaxis={"title": {"text": "gate"}, "range": [0, 1]},
            height=300,
            margin=_MARGIN,
        ),
    )


def write_timeline(
    gates: np.ndarray,
    sentences: Sequence[str],
    support: Sequence[int] = (),
    step: int | None = None,
) -> go.Figure:
    """How strongly every sentence was written into every slot.

    Args:
        gates: ``[S, N]`` gate values.
        sentences: the ``S`` sentences (axis labels).
        support: 0-based indexes of supporting facts, marked with :data:`SUPPORT_MARK`.
        step: a 0-based sentence to outline, or None.

    Returns:
        A sentence x slot heatmap on a fixed 0..1 scale.
    """
    gates = np.asarray(gates, dtype=np.float32)
    labels = sentence_labels(sentences, support)
    data = [
        go.Heatmap(
            z=gates,
            x=list(range(gates.shape[1])),
            y=list(range(gates.shape[0])),
            customdata=np.asarray(labels, dtype=object)[:, None].repeat(gates.shape[1], 1),
            colorscale=WEIGHT_SCALE,
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "gate"}},
            hovertemplate="%{customdata}<br>slot %{x}<br>gate %{z:.4f}<extra></extra>",
        )
    ]
    shapes = []
    if step is not None:
        shapes.append(
            {
                "type": "rect",
                "x0": -0.5,
                "x1": gates.shape[1] - 0.5,
                "y0": step - 0.5,
                "y1": step + 0.5,
                "line": {"color": HIGHLIGHT, "width": 2},
            }
        )
    note = f" ({SUPPORT_MARK} support)" if len(support) else ""
    return go.Figure(
        data=data,
        layout=dict(
            title={"text": "Write timeline: gate, sentence × slot" + note},
            shapes=shapes,
            xaxis={"dtick": 1, "side": "top"},
            yaxis=_sentence_axis(labels),
            height=_height(gates.shape[0]),
            margin=_TOP_AXIS_MARGIN,
        ),
    )


def slot_entity_heatmap(
    similarity: np.ndarray, entities: Sequence[str], step_label: str = ""
) -> go.Figure:
    """Cosine similarity of each slot to each entity word at one step.

    Args:
        similarity: ``[N, E]`` cosine similarities.
        entities: the ``E`` entity words.
        step_label: the sentence, for the title.
    """
    similarity = np.asarray(similarity, dtype=np.float32)
    data = [
        go.Heatmap(
            z=similarity,
            x=[safe_label(e) for e in entities],
            y=list(range(similarity.shape[0])),
            colorscale=STATE_SCALE,
            zmin=-1.0,
            zmax=1.0,
            colorbar={"title": {"text": "cosine"}},
            hovertemplate="slot %{y}<br>%{x}<br>cosine %{z:.3f}<extra></extra>",
        )
    ]
    title = "Which slot tracks what" + (f" — {safe_label(step_label)}" if step_label else "")
    return go.Figure(
        data=data,
        layout=dict(
            title={"text": title},
            xaxis={"title": {"text": "entity word"}, "type": "category"},
            yaxis={"title": {"text": "slot"}, "autorange": "reversed", "dtick": 1},
            height=_height(similarity.shape[0], per_row=18, extra=160),
            margin=_MARGIN,
        ),
    )


def entity_over_time(
    similarity: np.ndarray, sentences: Sequence[str], entity: str, support: Sequence[int] = ()
) -> go.Figure:
    """Cosine similarity of every slot to one entity word after each sentence.

    Args:
        similarity: ``[S, N]`` cosine similarity to the entity after each sentence.
        sentences: the ``S`` sentences (axis labels).
        entity: the entity word, for the title.
        support: 0-based supporting facts, marked with :data:`SUPPORT_MARK`.
    """
    similarity = np.asarray(similarity, dtype=np.float32)
    labels = sentence_labels(sentences, support)
    data = [
        go.Heatmap(
            z=similarity,
            x=list(range(similarity.shape[1])),
            y=list(range(similarity.shape[0])),
            customdata=np.asarray(labels, dtype=object)[:, None].repeat(similarity.shape[1], 1),
            colorscale=STATE_SCALE,
            zmin=-1.0,
            zmax=1.0,
            colorbar={"title": {"text": "cosine"}},
            hovertemplate="%{customdata}<br>slot %{x}<br>cosine %{z:.3f}<extra></extra>",
        )
    ]
    return go.Figure(
        data=data,
        layout=dict(
            title={"text": f"Slot × time: resemblance to '{safe_label(entity)}'"},
            xaxis={"dtick": 1, "side": "top"},
            yaxis=_sentence_axis(labels),
            height=_height(similarity.shape[0]),
            margin=_TOP_AXIS_MARGIN,
        ),
    )


def answer_bars(
    probs: np.ndarray,
    words: Sequence[str],
    k: int = 8,
    answer: str | None = None,
    title: str = "Answer distribution",
) -> go.Figure:
    """The ``k`` most probable answers, the followed answer in red.

    Args:
        probs: ``[V]`` probabilities.
        words: the ``V`` vocabulary words.
        k: how many answers to show.
        answer: the answer to highlight (shown even if outside the top ``k``).
        title: the figure title.
    """
    probs = np.asarray(probs, dtype=np.float32)
    words = list(words)
    order = list(np.argsort(-probs, kind="stable")[:k])
    if answer is not None and answer in words and words.index(answer) not in order:
        order.append(words.index(answer))
    labels = [safe_label(words[i]) for i in order]
    colours = [HIGHLIGHT if words[i] == answer else BASE_COLOUR for i in order]
    data = [
        go.Bar(
            x=probs[order],
            y=labels,
            orientation="h",
            marker_color=colours,
            hovertemplate="%{y}: %{x:.4f}<extra></extra>",
        )
    ]
    return go.Figure(
        data=data,
        layout=dict(
            title={"text": safe_label(title)},
            xaxis={"title": {"text": "probability"}, "range": [0, 1]},
            yaxis={"autorange": "reversed", "type": "category"},
            height=_height(len(order), per_row=26, extra=110),
            margin=_MARGIN,
        ),
    )


def read_attention_bars(attention: np.ndarray, silenced: Sequence[int] = ()) -> go.Figure:
    """The question's attention over the final slots. ``attention``: ``[N]``."""
    attention = np.asarray(attention, dtype=np.float32)
    off = set(int(j) for j in silenced)
    colours = [HIGHLIGHT if j in off else BASE_COLOUR for j in range(len(attention))]
    data = [
        go.Bar(
            x=list(range(len(attention))),
            y=attention,
            marker_color=colours,
            hovertemplate="slot %{x}<br>attention %{y:.4f}<extra></extra>",
        )
    ]
    note = " (red: silenced)" if off else ""
    return go.Figure(
        data=data,
        layout=dict(
            title={"text": "Read attention of the question over the slots" + note},
            xaxis={"title": {"text": "slot"}, "dtick": 1},
            yaxis={"title": {"text": "attention"}, "range": [0, 1]},
            height=300,
            margin=_MARGIN,
        ),
    )


def hop_attention_heatmap(
    hop_attention: np.ndarray,
    sentences: Sequence[str],
    support: Sequence[int] = (),
    in_memory: Sequence[bool] | None = None,
) -> go.Figure:
    """Where each hop of a MemN2N looked: sentences down, hops across.

    Args:
        hop_attention: ``[K, S]`` attention of each hop over the sentences.
        sentences: the ``S`` sentences.
        support: 0-based supporting facts, marked with :data:`SUPPORT_MARK`.
        in_memory: optional ``[S]`` flags; sentences outside the memory are labelled "(out)".
    """
    attention = np.asarray(hop_attention, dtype=np.float32).T  # (S, K)
    labels = sentence_labels(sentences, support, in_memory)
    hops = [f"hop {k + 1}" for k in range(attention.shape[1])]
    data = [
        go.Heatmap(
            z=attention,
            x=hops,
            y=list(range(attention.shape[0])),
            customdata=np.asarray(labels, dtype=object)[:, None].repeat(attention.shape[1], 1),
            colorscale=WEIGHT_SCALE,
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": {"text": "attention"}},
            hovertemplate="%{customdata}<br>%{x}<br>attention %{z:.4f}<extra></extra>",
        )
    ]
    note = f" ({SUPPORT_MARK} support)" if len(support) else ""
    return go.Figure(
        data=data,
        layout=dict(
            title={"text": "Read attention of each hop over the sentences" + note},
            xaxis={"side": "top", "type": "category"},
            yaxis=_sentence_axis(labels),
            height=_height(attention.shape[0]),
            margin=_TOP_AXIS_MARGIN,
        ),
    )


def recall_curve(
    probs: np.ndarray,
    sentences: Sequence[str],
    answer: str,
    support: Sequence[int] = (),
    step: int | None = None,
) -> go.Figure:
    """Probability of the answer if the question were asked after each sentence.

    Args:
        probs: ``[S]`` probability of ``answer`` after sentences ``0..t``.
        sentences: the ``S`` sentences (hover text).
        answer: the followed answer word.
        support: 0-based supporting facts, drawn as dotted vertical lines.
        step: a 0-based sentence to mark, or None.
    """
    probs = np.asarray(probs, dtype=np.float32)
    x = list(range(1, len(probs) + 1))
    texts = [safe_label(s) for s in sentences]
    data = [
        go.Scatter(
            x=x,
            y=probs,
            mode="lines+markers",
            customdata=texts,
            line={"color": BASE_COLOUR},
            hovertemplate="after sentence %{x}: %{customdata}<br>P = %{y:.4f}<extra></extra>",
        )
    ]
    lines = [(int(i) + 1, {"dash": "dot", "color": "#2ca02c"}) for i in support]
    if step is not None:
        lines.append((step + 1, {"color": HIGHLIGHT}))
    shapes = [
        {
            "type": "line",
            "x0": x,
            "x1": x,
            "xref": "x",
            "y0": 0,
            "y1": 1,
            "yref": "paper",
            "line": line,
        }
        for x, line in lines
    ]
    note = " (dotted: supporting facts)" if len(support) else ""
    return go.Figure(
        data=data,
        layout=dict(
            title={"text": f"Recall over time: P({safe_label(answer)}) after each sentence{note}"},
            shapes=shapes,
            xaxis={
                "title": {"text": "question asked after sentence"},
                "range": [0.5, len(x) + 0.5],
            },
            yaxis={"title": {"text": "probability"}, "range": [0, 1.02]},
            height=320,
            margin=_MARGIN,
        ),
    )


def ablation_bars(
    before: np.ndarray,
    after: np.ndarray,
    words: Sequence[str],
    what: str,
    k: int = 6,
    answer: str | None = None,
) -> go.Figure:
    """Answer probabilities with the full memory and with part of it removed, side by side.

    Args:
        before: ``[V]`` probabilities without the ablation.
        after: ``[V]`` probabilities with it.
        words: the ``V`` vocabulary words.
        what: the ablation in words, e.g. "slot 3 silenced".
        k: the top ``k`` answers of each distribution are shown.
        answer: an answer to show whether or not it is in either top ``k``.
    """
    before = np.asarray(before, dtype=np.float32)
    after = np.asarray(after, dtype=np.float32)
    words = list(words)
    order = list(dict.fromkeys([*np.argsort(-before)[:k], *np.argsort(-after)[:k]]))
    if answer is not None and answer in words and words.index(answer) not in order:
        order.append(words.index(answer))
    order.sort(key=lambda i: -float(max(before[i], after[i])))
    labels = [safe_label(words[i]) for i in order]
    data = [
        go.Bar(
            name="full memory",
            x=labels,
            y=before[order],
            marker_color=BASE_COLOUR,
            hovertemplate="%{x}: %{y:.4f}<extra>full memory</extra>",
        ),
        go.Bar(
            name=safe_label(what),
            x=labels,
            y=after[order],
            marker_color=ABLATED_COLOUR,
            hovertemplate="%{x}: %{y:.4f}<extra>ablated</extra>",
        ),
    ]
    return go.Figure(
        data=data,
        layout=dict(
            title={"text": f"Answer with the full memory and with {safe_label(what)}"},
            barmode="group",
            xaxis={"type": "category"},
            yaxis={"title": {"text": "probability"}, "range": [0, 1]},
            legend={"orientation": "h", "y": -0.2},
            height=340,
            margin=_MARGIN,
        ),
    )
