"""Attention explorer: per-head heatmaps, all heads, one query's scores and weights, head table."""

import numpy as np
import pandas as pd
import streamlit as st

from stmem_viz import StmemError
from stmem_viz.analysis.attention import rollout, softmax_rows
from stmem_viz.analysis.views import STACK_TITLES, default_texts, matrix_view, stacks_for
from stmem_viz.plots import attention as figures
from stmem_viz.plots.export import arrays_npz, matrix_csv
from stmem_viz.ui import attention_cache as cache
from stmem_viz.ui import state
from stmem_viz.ui.export import data_downloads, figure_downloads
from stmem_viz.ui.sidebar import load_chosen, transformer_sidebar

state.run_through_entrypoint()

st.title("Attention")
choice = transformer_sidebar()
loaded = load_chosen(choice)
if loaded is None:
    st.stop()

# Text in.
source_default, target_default = default_texts(loaded.kind)
st.session_state.setdefault("attention.text", source_default)
st.session_state.setdefault("attention.target", target_default or "")
if loaded.kind == "encoder-decoder":
    left, right = st.columns(2)
    text = left.text_area("Source text (encoder)", key="attention.text", height=110)
    target = right.text_area("Target text (decoder)", key="attention.target", height=110)
else:
    text = st.text_area("Text", key="attention.text", height=110)
    target = None

# Which attention: stack, layer, head.
stacks = stacks_for(loaded.kind)
controls = st.columns([2, 2, 2, 3])
stack = controls[0].selectbox(
    "Attention", stacks, format_func=STACK_TITLES.get, key="attention.stack"
)
n_layers = loaded.n_encoder_layers if stack == "encoder" else loaded.n_layers
if st.session_state.get("attention.layer", 0) >= n_layers:
    st.session_state["attention.layer"] = 0
layer = controls[1].number_input("Layer", 0, n_layers - 1, key="attention.layer")
head_options = ["mean"] + list(range(loaded.n_heads))
if st.session_state.get("attention.head") not in head_options:
    st.session_state["attention.head"] = 0
head = controls[2].selectbox(
    "Head",
    head_options,
    key="attention.head",
    format_func=lambda h: "mean of heads" if h == "mean" else f"head {h}",
)
with controls[3]:
    hide_special = st.checkbox("Hide special tokens", key="attention.hide_special")
    hide_first = st.checkbox("Hide first token", key="attention.hide_first")
    renormalise = st.checkbox(
        "Renormalise rows",
        value=True,
        key="attention.renormalise",
        help="After hiding tokens, rescale each row to sum to 1 over the keys still shown.",
    )

try:
    captured = cache.capture(choice, text, target, (int(layer),))
except StmemError as error:
    st.error(str(error))
    st.stop()
if captured.truncated:
    st.warning(
        f"The text has {captured.n_input_tokens} tokens; only the first {choice.max_tokens} "
        "are shown. Raise the token limit in the sidebar to see more."
    )
if captured.note:
    st.info(captured.note)
readers = cache.trained_readers(choice.spec)
if readers:
    st.caption(" ".join(readers))
unknown = loaded.tokenizer.unk_token
if unknown and unknown in (captured.tokens + (captured.target_tokens or [])):
    st.warning(f"Some words are unknown to this tokenizer and were read as {unknown}.")

head_index = None if head == "mean" else int(head)
view = matrix_view(captured, stack, int(layer), head_index, hide_special, hide_first, renormalise)
state.write_query_params(
    model=choice.spec,
    text=text[:1500],
    target=target,
    layer=int(layer),
    head=head_index,
    query=st.session_state.get("attention.query"),
)

st.caption(f"Tokens ({len(view.key_tokens)} shown)")
if len(view.key_tokens) <= 48:
    strip = pd.DataFrame([view.key_tokens], columns=[str(i) for i in view.key_indices])
else:
    strip = pd.DataFrame({"position": view.key_indices, "token": view.key_tokens})
st.dataframe(strip, hide_index=True, height="auto" if len(view.key_tokens) <= 48 else 200)

name = f"{stack}-layer{layer}-{'mean' if head_index is None else f'head{head_index}'}"
tabs = st.tabs(["Heatmap", "All heads", "One query", "Heads overview", "Head table", "Rollout"])

with tabs[0]:
    title = f"{STACK_TITLES[stack]}, layer {layer}, " + (
        "mean of heads" if head_index is None else f"head {head_index}"
    )
    figure = figures.attention_heatmap(
        view.matrix,
        view.query_tokens,
        view.key_tokens,
        title,
        view.query_indices,
        view.key_indices,
    )
    st.plotly_chart(figure, key="attention.heatmap")
    figure_downloads(figure, name, "attention.heatmap.export")
    data_downloads(
        name,
        "attention.heatmap.data",
        csv=lambda: matrix_csv(view.matrix, view.query_tokens, view.key_tokens),
        npz=lambda: arrays_npz(
            query_tokens=view.query_tokens,
            key_tokens=view.key_tokens,
            attention=view.matrix,
            query_positions=view.query_indices,
            key_positions=view.key_indices,
        ),
    )

with tabs[1]:
    weights = captured.weights[(stack, int(layer))]
    grid = figures.head_grid(
        weights, view.key_tokens, title=f"{STACK_TITLES[stack]}, layer {layer}"
    )
    st.plotly_chart(grid, key="attention.grid")
    figure_downloads(grid, f"{stack}-layer{layer}-heads", "attention.grid.export")
    data_downloads(
        f"{stack}-layer{layer}-heads",
        "attention.grid.data",
        npz=lambda: arrays_npz(attention=weights),
    )

with tabs[2]:
    if head_index is None:
        st.info("Pick one head to see its raw scores; the mean of heads has weights only.")
    positions = view.query_indices
    if st.session_state.get("attention.query") not in positions:
        st.session_state["attention.query"] = positions[-1]
    query = st.selectbox(
        "Query token",
        positions,
        key="attention.query",
        format_func=lambda i: f"{i}: {view.query_tokens[positions.index(i)]}",
    )
    row = positions.index(query)
    scores_row = None if view.scores is None else view.scores[row]
    query_label = f"{query}: {view.query_tokens[row]}"
    st.plotly_chart(
        figures.query_scores(scores_row, view.matrix[row], view.key_tokens, query_label),
        key="attention.query_figure",
    )
    if scores_row is not None:
        visible = np.isfinite(scores_row)
        recomputed = softmax_rows(scores_row[None, :])[0]
        st.caption(
            f"{int(visible.sum())} keys visible, {int((~visible).sum())} masked. "
            f"softmax(e) reproduces the weights shown to within "
            f"{float(np.abs(recomputed - view.matrix[row]).max()):.1e}"
            + (" (before hiding and renormalising)." if (hide_special or hide_first) else ".")
        )

# One head table serves the overview and the table tabs.
try:
    head_table, head_table_error = cache.head_table(choice, text, target), None
except StmemError as error:
    head_table, head_table_error = None, str(error)

with tabs[3]:
    if head_table is None:
        st.error(head_table_error)
    else:
        table = head_table
        metric = st.selectbox(
            "Metric",
            ["entropy", "first_token_mass", "prev_token_score", "mean_distance"],
            key="attention.metric",
        )
        for stack_name in table["stack"].unique():
            part = table[table["stack"] == stack_name]
            st.plotly_chart(
                figures.layer_head_overview(part, metric, f"{STACK_TITLES[stack_name]}: {metric}"),
                key=f"attention.overview.{stack_name}",
            )

with tabs[4]:
    if head_table is None:
        st.error(head_table_error)
    else:
        table = head_table
        if loaded.kind == "decoder" and st.button("Measure induction scores", key="attention.ind"):
            st.session_state["attention.induction"] = True
        if st.session_state.get("attention.induction") and loaded.kind == "decoder":
            table = table.merge(cache.induction_table(choice), on=["stack", "layer", "head"])
        st.dataframe(table, hide_index=True, key="attention.table")
        data_downloads("head-table", "attention.table.data", csv=lambda: table.to_csv().encode())

with tabs[5]:
    st.caption(
        "Attention rollout (Abnar & Zuidema, 2020): heads averaged, the residual stream added as "
        "0.5 I + 0.5 A, and the layers multiplied from the bottom up."
    )
    if stack == "cross":
        st.info("Rollout follows one stack of self-attention; choose a self-attention stack.")
    elif st.toggle("Compute rollout over every layer", key="attention.rollout"):
        every = cache.capture(choice, text, target, None)
        layers = [every.weights[(stack, i)] for i in range(n_layers)]
        rolled = rollout(layers)[np.ix_(view.key_indices, view.key_indices)]
        st.plotly_chart(
            figures.attention_heatmap(
                rolled,
                view.key_tokens,
                view.key_tokens,
                "rollout",
                view.key_indices,
                view.key_indices,
            ),
            key="attention.rollout_figure",
        )
