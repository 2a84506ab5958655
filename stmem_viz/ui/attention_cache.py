"""Cached attention computations for the pages, keyed by plain values (spec, text, layer...)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from stmem_viz.ui.sidebar import ModelChoice, load_transformer


def _loaded(choice: ModelChoice):
    return load_transformer(choice.spec, choice.device, choice.dtype, choice.trust_remote_code)


@st.cache_data(show_spinner="Running the model…", max_entries=32)
def capture(choice: ModelChoice, text: str, target: str | None, layers: tuple[int, ...] | None):
    """Weights and raw scores for the given layers (None: every layer)."""
    from stmem_viz.models.capture import capture_attention

    return capture_attention(
        _loaded(choice), text, target=target, layers=layers, max_tokens=choice.max_tokens
    )


@st.cache_data(show_spinner="Measuring every head…", max_entries=16)
def head_table(choice: ModelChoice, text: str, target: str | None):
    """Entropy, first-token mass, previous-token score and distance for every layer and head."""
    from stmem_viz.analysis.attention import head_metrics

    return head_metrics(_loaded(choice), text, target=target, max_tokens=choice.max_tokens)


@st.cache_data(show_spinner="Measuring induction on a repeated random sequence…", max_entries=8)
def induction_table(choice: ModelChoice):
    """Induction score of every head (decoder models)."""
    from stmem_viz.analysis.attention import induction_scores

    return induction_scores(_loaded(choice))


@st.cache_data(max_entries=32)
def trained_readers(spec: str) -> list[str]:
    """What the attention-supervised heads of a story-gpt were trained to read ([] otherwise)."""
    from stmem_viz import StmemError
    from stmem_viz.models.bundled import PREFIX, bundled_path
    from stmem_viz.models.story_gpt import trained_readers as readers

    try:
        folder = bundled_path(spec) if spec.strip().startswith(PREFIX) else Path(spec)
    except StmemError:
        return []
    return readers(folder) if folder.is_dir() else []
