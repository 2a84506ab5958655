"""Train a story model in the browser, watch its loss and accuracy, stop it early, keep it."""

import streamlit as st

from stmem_viz.models.jobs import TrainingJob
from stmem_viz.plots.training import training_curves
from stmem_viz.ui import state
from stmem_viz.ui.training import (
    FAMILIES,
    SIZE_FIELDS,
    checkpoint_zip,
    new_output_folder,
    register_trained,
)

state.run_through_entrypoint()

st.title("Train")
st.caption(
    "Train a memory network or a small Transformer on generated bAbI-style stories (tasks 1-3). "
    "The result joins the model pickers of every page for this session."
)

job: TrainingJob | None = st.session_state.get("train.job")
busy = job is not None and job.running

with st.container(border=True):
    family = st.selectbox("Model", FAMILIES, key="train.family", disabled=busy)
    left, middle, right, last = st.columns([2, 1, 1, 1])
    tasks = left.multiselect("Tasks", [1, 2, 3], default=[1, 2, 3], key="train.tasks")
    stories = middle.number_input("Stories per task", 50, 100_000, 1000, 50, key="train.stories")
    epochs = right.number_input("Epochs", 1, 500, 5, key="train.epochs")
    seed = last.number_input("Seed", 0, 1_000_000, 0, key="train.seed")
    st.caption("Sizes")
    sizes = {}
    columns = st.columns(4)
    for i, (name, label, default, low, high) in enumerate(SIZE_FIELDS[family]):
        key = f"train.size.{family}.{name}"
        sizes[name] = int(columns[i % 4].number_input(label, low, high, default, key=key))
    submitted = st.button("Start training", type="primary", disabled=busy, key="train.start")

if submitted:
    if not tasks:
        st.error("Choose at least one task to train on.")
    else:
        out = new_output_folder(family)
        job = TrainingJob(
            family,
            out,
            tasks=tuple(tasks),
            n_stories=int(stories),
            epochs=int(epochs),
            seed=int(seed),
            sizes=sizes,
        ).start()
        st.session_state["train.job"] = job
        st.session_state["train.registered"] = False
        busy = True


@st.fragment(run_every=1.0 if busy else None)
def progress_panel() -> None:
    """Live view of the running (or last) job; polls once a second while training runs."""
    job: TrainingJob | None = st.session_state.get("train.job")
    if job is None:
        st.info("Choose a model and sizes, then start training.")
        return
    history = list(job.history)
    if job.running:
        last = history[-1] if history else None
        fraction = 0.0 if last is None else min(1.0, last.step / max(1, last.total_steps))
        st.progress(fraction, text=f"Training {job.family}…")
        if st.button("Stop early", key="train.stop", disabled=job.stop_requested):
            job.stop()
    if history:
        st.plotly_chart(training_curves(history), key="train.curves")
        last = history[-1]
        accuracy = "-" if last.val_accuracy is None else f"{last.val_accuracy:.3f}"
        st.caption(
            f"epoch {last.epoch}, step {last.step}/{last.total_steps}, loss {last.loss:.4f}, "
            f"validation accuracy {accuracy}, {last.elapsed_s:.0f} s"
        )
    if job.running:
        return
    if job.error:
        st.error(job.error)
        return
    if not st.session_state.get("train.registered"):
        name = register_trained(job)
        st.session_state["train.registered"] = True
        st.session_state["train.last_name"] = name
        st.rerun()  # the whole page: stop polling and refresh the form
    name = st.session_state.get("train.last_name", job.family)
    stopped = " (stopped early)" if job.result and job.result.stopped_early else ""
    st.success(f"Trained {name}{stopped}. It is now in the model pickers for this session.")
    st.download_button(
        "Download checkpoint (zip)",
        data=lambda: checkpoint_zip(job.out),
        file_name=f"{job.out.name}.zip",
        mime="application/zip",
        key="train.download",
        on_click="ignore",
    )


progress_panel()

trained = state.trained_models()
if trained:
    st.subheader("Trained this session")
    for name, folder in trained.items():
        st.text(f"{name}: {folder}")
