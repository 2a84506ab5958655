"""Forgetting: how recall falls with input length, with fitted half-lives."""

import streamlit as st

from stmem_viz import StmemError
from stmem_viz.analysis import forgetting as fg
from stmem_viz.data import TASKS
from stmem_viz.models.device import available_devices
from stmem_viz.ui import forgetting as ui
from stmem_viz.ui import state

state.run_through_entrypoint()

st.title("Forgetting")
st.caption(
    "Put more and more text between a fact and the question about it and watch recall fall. "
    "Curves are fitted with an exponential and a power law to chance; the half-life is where "
    "recall has fallen halfway. Passkey retrieval follows Mohtashami & Jaggi (2023), the depth "
    "x length grid Kamradt's needle in a haystack, the ICL score Olsson et al. (2022)."
)

# Experiment and models.
names = list(fg.EXPERIMENTS)
experiment = st.selectbox(
    "Experiment",
    names,
    key="forgetting.experiment",
    format_func=lambda n: f"{n}: {fg.EXPERIMENTS[n].title}",
)
spec = fg.EXPERIMENTS[experiment]
options = ui.model_options(experiment)
chosen = [m for m in st.session_state.get("forgetting.models", []) if m in options]
st.session_state["forgetting.models"] = chosen
models = st.multiselect(
    "Models (overlaid)", options, key="forgetting.models", format_func=ui.family_label
)
custom = st.text_input(
    "More models (hub ids or folders, comma-separated)",
    key="forgetting.custom",
    placeholder="gpt2, /path/to/model",
)
models = models + [m.strip() for m in custom.split(",") if m.strip()]

# Grid and samples (defaults go into session state once, so widgets never fight over them).
defaults = {
    f"forgetting.grid.{experiment}": ",".join(str(v) for v in spec.default_grid),
    "forgetting.n": 20,
    "forgetting.seed": 0,
    "forgetting.depths": "0,25,50,75,100",
    "forgetting.span": 16,
}
for key, value in defaults.items():
    st.session_state.setdefault(key, value)
left, middle, right = st.columns(3)
grid_text = left.text_input(f"Grid: {spec.grid_label}", key=f"forgetting.grid.{experiment}")
n = middle.number_input("Samples per grid point", 1, 2000, key="forgetting.n")
seed = right.number_input("Seed", 0, 2**31 - 1, key="forgetting.seed")
row = st.columns(3)
extra: dict = {}
depth_text = ""
if spec.heatmap:
    depth_text = row[0].text_input("Fact depths (%)", key="forgetting.depths")
if experiment in ("distance", "depth-length", "gate-retention"):
    extra["task"] = row[1].selectbox("bAbI task", TASKS, key="forgetting.task")
if experiment == "copy-gap":
    extra["span"] = row[1].number_input("Span length (tokens)", 1, 256, key="forgetting.span")
if experiment == "position-nll":
    extra["text"] = st.text_area(
        "Text (empty: generated story text)", key="forgetting.text", height=100
    )
device = row[2].selectbox("Device", ["auto", *available_devices()], key="forgetting.device")

settings = None
try:
    if spec.heatmap:
        extra["depths"] = fg.parse_depths(depth_text)
    settings = fg.make_settings(experiment, grid_text, n=int(n), seed=int(seed), **extra)
except StmemError as error:
    ui.show_error(error)

# Estimate, run, stop.
if settings is not None and st.session_state.get(ui.JOB) is None:
    buttons = st.columns([1, 1, 3])
    try:
        if buttons[0].button("Estimate run time", key="forgetting.estimate"):
            ui.estimate(settings, models, device)
        if buttons[1].button("Run", type="primary", key="forgetting.run"):
            ui.start_job(settings, models, device)
    except StmemError as error:
        ui.show_error(error)
    seconds = ui.known_estimate(settings, models, device)
    if seconds is not None:
        buttons[2].info(f"Estimated run time: about {ui.format_seconds(seconds)}.")
ui.advance_job()

# Results (kept in the session across pages).
result = st.session_state.get(ui.RESULT)
if result is not None and st.session_state.get(ui.JOB) is None:
    st.divider()
    st.caption(
        f"{result.settings.experiment} · {len(result.samples):,} samples · "
        f"models: {', '.join(result.samples.model.unique())}"
    )
    ui.show_result(result)
