"""Memory: watch a memory network write, keep and lose facts sentence by sentence."""

import streamlit as st

from stmem_viz import StmemError
from stmem_viz.analysis import memory as analysis
from stmem_viz.plots import memory as figures
from stmem_viz.plots.export import arrays_npz
from stmem_viz.ui import memory as ui
from stmem_viz.ui import state
from stmem_viz.ui.export import data_downloads, figure_downloads

state.run_through_entrypoint()

st.title("Memory")
st.caption(
    "A Recurrent Entity Network (Henaff et al., 2017) writes every sentence into its slots "
    "through a gate; an end-to-end memory network (Sukhbaatar et al., 2015) stores the sentences "
    "and reads them in hops. Follow what each one writes, keeps and loses."
)

# Model.
spec = ui.model_picker()
if spec is None:
    st.stop()
try:
    model = ui.load_model(spec)
except StmemError as error:
    st.error(ui.escape_markdown(str(error)))
    st.stop()

# Story.
story = ui.story_picker()
if story is None:
    st.stop()
try:
    trace = ui.trace(spec, story.sentences, story.question)
except StmemError as error:
    st.error(ui.escape_markdown(str(error)))
    st.stop()
if trace.unknown_words:
    st.warning(
        ui.escape_markdown(
            "Words this model does not know (read as <unk>; the model still runs): "
            + ", ".join(trace.unknown_words)
        )
    )
missing = analysis.unmentioned_words(story.sentences, story.question)
if missing:
    st.warning(
        f"The question asks about {ui.escape_markdown(', '.join(missing))}, which the story never "
        "mentions: whatever the model answers is a guess."
    )
support = ui.support_indexes(story)
key = ui.story_key(spec, story)
answer_id, answer, answer_source = analysis.target_answer(story, trace.answer_probs, model.vocab)
with st.expander(f"The story ({len(story.sentences)} sentences)", expanded=False):
    lines = [f"{'★ ' if i in support else ''}{i + 1}: {s}" for i, s in enumerate(story.sentences)]
    lines.append(f"Q: {story.question}" + (f"   A: {story.answer}" if story.answer else ""))
    st.text("\n".join(lines))
top = model.vocab.words[int(trace.answer_probs.argmax())]
esc = ui.escape_markdown
st.markdown(
    f"**Question:** {esc(story.question)} &nbsp;·&nbsp; "
    f"**Model's answer:** {esc(top)} (p = {float(trace.answer_probs.max()):.3f}) &nbsp;·&nbsp; "
    f"**Story's answer:** {esc(story.answer or 'unknown')} &nbsp;·&nbsp; "
    f"**P({esc(answer)})**, {answer_source}: {float(trace.answer_probs[answer_id]):.3f}"
)
n = len(trace.sentences)

# Step by step (EntNet): only this fragment reruns when the step moves.
if model.family == "entnet":
    words, sims = ui.similarity(spec, key, story)
    playing = ui.prepare_step(key, n)

    @st.fragment(run_every=ui.PLAY_SECONDS if playing else None)
    def step_view() -> None:
        t = ui.step_controls(n, playing)
        sentence = f"{t + 1}: {trace.sentences[t]}"
        state_fig = figures.slot_state_heatmaps(
            trace.slots_before[t], trace.slots_after[t], sentence
        )
        st.plotly_chart(state_fig, key="memory.states")
        a, b = st.columns(2)
        gate_fig = figures.gate_bars(trace.gates[t], sentence)
        a.plotly_chart(gate_fig, key="memory.gates")
        now_fig = figures.answer_bars(
            trace.answers_by_prefix[t],
            model.vocab.words,
            answer=answer,
            title=f"Answer if asked after sentence {t + 1}",
        )
        b.plotly_chart(now_fig, key="memory.answer_now")
        entity_fig = figures.slot_entity_heatmap(sims[t], words, sentence)
        st.plotly_chart(entity_fig, key="memory.entities")
        st.caption(
            "Each entity word is encoded as a one-word sentence by the network's own story "
            "encoder (its embedding times the first position mask); the cosine compares that "
            "vector with each slot state after the sentence."
        )
        with st.expander("Export the figures of this step"):
            step_figures = {
                "slot-states": state_fig,
                "gates": gate_fig,
                "answer-now": now_fig,
                "slot-entities": entity_fig,
            }
            name = st.selectbox("Figure", list(step_figures), key="memory.export_step_figure")
            figure_downloads(step_figures[name], f"{name}-step{t + 1}", "memory_download.step")

    st.subheader("Step by step")
    step_view()

    st.subheader("The whole story")
    a, b = st.columns(2)
    timeline = ui.timeline_figure(spec, key, story)
    a.plotly_chart(timeline, key="memory.timeline")
    entity = b.selectbox("Entity word", words, key="memory.entity")
    over_time = ui.entity_figure(spec, key, story, entity)
    b.plotly_chart(over_time, key="memory.entity_time")
    a, b = st.columns(2)
    final_answer = ui.answer_figure(spec, key, story, answer)
    a.plotly_chart(final_answer, key="memory.answer")
    read = ui.read_figure(spec, key, story)
    b.plotly_chart(read, key="memory.read")
    static = {"write-timeline": timeline, f"slots-{entity}": over_time}
    static |= {"answer": final_answer, "read-attention": read}
else:
    st.subheader("Where each hop reads")
    a, b = st.columns([3, 2])
    hops = ui.hop_figure(spec, key, story)
    a.plotly_chart(hops, key="memory.hops")
    final_answer = ui.answer_figure(spec, key, story, answer)
    b.plotly_chart(final_answer, key="memory.answer")
    if not trace.in_memory.all():
        b.info(f"This network holds the last {model.max_sentences} sentences; older ones are out.")
    static = {"hop-attention": hops, "answer": final_answer}

# Recall over time.
st.subheader("Recall over time")
recall_fig = ui.recall_figure(spec, key, story, answer_id)
st.plotly_chart(recall_fig, key="memory.recall")
st.caption(
    f"P({esc(answer)}) ({answer_source}) if the question were asked right after each sentence: "
    "a rise shows where the fact was written, a fall where it was overwritten or faded."
)
static["recall"] = recall_fig

# Ablation.
st.subheader("Ablation: is the answer read where the figures say?")
if model.family == "entnet":
    slots = list(range(trace.read_attention.shape[0]))
    if st.session_state.get("memory.silence", len(slots)) >= len(slots):
        st.session_state["memory.silence"] = int(trace.read_attention.argmax())
    chosen = st.selectbox(
        "Silence slot",
        slots,
        key="memory.silence",
        format_func=lambda j: f"slot {j} (read attention {trace.read_attention[j]:.3f})",
    )
else:
    last = trace.hop_attention[-1]
    if st.session_state.get("memory.drop", n) >= n:
        st.session_state["memory.drop"] = int(last.argmax())
    chosen = st.selectbox(
        "Remove sentence from memory",
        list(range(n)),
        key="memory.drop",
        format_func=lambda i: f"{i + 1}: {trace.sentences[i]} (last hop {last[i]:.3f})",
    )
ablation_fig, effect, what = ui.ablation(spec, key, story, int(chosen), answer_id)
st.plotly_chart(ablation_fig, key="memory.ablation")
st.info(ui.escape_markdown(effect.sentence(what[0].upper() + what[1:])))
static["ablation"] = ablation_fig

# Export.
with st.expander("Export"):
    name = st.selectbox("Figure", list(static), key="memory.export_figure")
    figure_downloads(static[name], name, "memory_download.static")
    st.caption(f"Trace of this story ({model.family}) as NPZ, the layout of 'stmem-viz trace'.")
    data_downloads(
        f"trace-{model.family}",
        "memory_download.trace",
        npz=lambda: arrays_npz(**analysis.trace_arrays(trace, model.vocab)),
    )
