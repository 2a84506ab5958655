"""The shared sidebar: which Transformer to load, where, in which precision, and what is loaded.

Every page that runs a Hugging Face model calls ``transformer_sidebar()``; the choice lives in
session state under ``sidebar.*`` keys, so it survives page switches and reruns.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from stmem_viz import StmemError
from stmem_viz.models.bundled import bundled_family, list_bundled
from stmem_viz.models.device import available_devices, resolve_device, supported_dtypes
from stmem_viz.ui import state

OTHER = "Other: hub id or local path"
DEFAULT_MODEL = "bundled:story-gpt"


@dataclass(frozen=True)
class ModelChoice:
    """What the user picked: a hashable key for caches."""

    spec: str
    device: str
    dtype: str
    trust_remote_code: bool
    max_tokens: int


def transformer_specs() -> list[str]:
    """Specs offered in the picker: bundled Transformers first, then ones trained this session."""
    bundled = [f"bundled:{n}" for n in list_bundled() if bundled_family(n) == "hf"]
    trained = [
        path for name, path in state.trained_models().items() if name.startswith("story-gpt")
    ]
    return bundled + trained


@st.cache_resource(show_spinner="Loading the model…", max_entries=3)
def load_transformer(spec: str, device: str, dtype: str, trust_remote_code: bool):
    """Load once per (spec, device, dtype, trust) and keep it for every session."""
    from stmem_viz.models.hf import load_model

    return load_model(spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


def transformer_sidebar() -> ModelChoice:
    """Draw the model picker, device, dtype and token limit; return the current choice."""
    state.apply_query_params()
    specs = transformer_specs()
    options = specs + [OTHER]
    sidebar = st.sidebar
    sidebar.header("Model")
    wanted = st.session_state.get("sidebar.spec", DEFAULT_MODEL)
    if "sidebar.choice" not in st.session_state:
        st.session_state["sidebar.choice"] = wanted if wanted in specs else OTHER
        if wanted not in specs:
            st.session_state.setdefault("sidebar.custom", "" if wanted == DEFAULT_MODEL else wanted)
    choice = sidebar.selectbox("Transformer", options, key="sidebar.choice")
    if choice == OTHER:
        spec = sidebar.text_input(
            "Hub id or local folder",
            key="sidebar.custom",
            placeholder="gpt2, meta-llama/Llama-3.2-1B, /path/to/model",
            help="A hub id downloads on first use; a folder must hold a save_pretrained model.",
        ).strip()
        sidebar.checkbox(
            "Trust remote code",
            key="sidebar.trust",
            help="Runs Python code shipped with the model. Only for models you trust.",
        )
    else:
        spec = choice
    st.session_state["sidebar.spec"] = spec

    devices = ["auto"] + available_devices()
    device = sidebar.selectbox("Device", devices, key="sidebar.device")
    resolved = resolve_device(device)
    dtype = sidebar.selectbox("Precision", supported_dtypes(resolved), key="sidebar.dtype")
    max_tokens = sidebar.number_input(
        "Token limit",
        min_value=8,
        max_value=16384,
        value=512,
        step=64,
        key="sidebar.max_tokens",
        help="Longer inputs are cut to this many tokens, with a warning.",
    )
    return ModelChoice(
        spec=spec,
        device=device,
        dtype=dtype,
        trust_remote_code=bool(st.session_state.get("sidebar.trust", False)) and choice == OTHER,
        max_tokens=int(max_tokens),
    )


def load_chosen(choice: ModelChoice):
    """Load the chosen model, or show why not in the page and return None (state is kept)."""
    if not choice.spec:
        st.info("Enter a Hugging Face hub id or a local folder in the sidebar.")
        return None
    try:
        loaded = load_transformer(
            choice.spec, choice.device, choice.dtype, choice.trust_remote_code
        )
    except StmemError as error:
        st.error(str(error))
        return None
    model_card(loaded)
    return loaded


def model_card(loaded) -> None:
    """A compact card of what is loaded, at the bottom of the sidebar."""
    with st.sidebar.expander("Loaded model", expanded=True):
        rows = loaded.summary()
        width = max(len(key) for key in rows)
        st.text("\n".join(f"{key:<{width}}  {value}" for key, value in rows.items()))
