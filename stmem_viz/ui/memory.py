"""The Memory page's Streamlit helpers: model and story pickers, the step slider with its
Play button, and cached models, traces and figures.

Traces are cached with ``st.cache_data`` keyed by the model spec, the sentences, the question
and the ablation (copied on every hit). Everything derived from one story (similarities, recall,
figures that do not depend on the step) is keyed by :func:`story_key`, a digest of the same
values, so that a rerun hashes one short string. Models and figures are cached with
``st.cache_resource`` and shared between sessions: the page must not modify them.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from stmem_viz import StmemError
from stmem_viz.analysis import memory as analysis
from stmem_viz.data import TASKS
from stmem_viz.models.bundled import bundled_family, list_bundled
from stmem_viz.models.entnet import EntNetTrace
from stmem_viz.models.memn2n import MemN2NTrace
from stmem_viz.models.story_models import FAMILIES, StoryModel, load_story_model
from stmem_viz.plots import memory as figures
from stmem_viz.ui import state

SOURCES = ("Generated story", "Typed text", "Uploaded file")
EXAMPLE_TEXT = (
    "Mary went to the kitchen.\nJohn moved to the garden.\nMary travelled to the office.\n"
    "Where is Mary?"
)
MAX_GENERATED = 80
OTHER = "other"
PLAY_SECONDS = 0.8
# Buttons (and download buttons) take keys outside "memory.*": the app writes every "memory.*"
# key back into session state at the start of each run, and a button's value cannot be set.
PLAY_BUTTON = "memory_button.play"
NEW_STORY_BUTTON = "memory_button.new_story"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|<>~$])")


def escape_markdown(text: str) -> str:
    """Text that Streamlit markdown (``st.error``, ``st.warning``, ``st.write``) shows literally."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def _folder_family(folder: str) -> str | None:
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    family = config.get("stmem_family") if isinstance(config, dict) else None
    return family if family in FAMILIES else None


def model_options() -> dict[str, str]:
    """Memory networks to offer: spec -> display label (bundled first, then this session's)."""
    options = {}
    for name in list_bundled():
        family = bundled_family(name)
        if family in FAMILIES:
            options[f"bundled:{name}"] = f"{name} (bundled)"
    for name, folder in state.trained_models().items():
        family = _folder_family(folder)
        if family is not None:
            options[str(folder)] = f"{name} ({family}, this session)"
    return options


def model_picker() -> str | None:
    """The sidebar's memory-network choice: a spec, or None (after a hint) if none is chosen."""
    options = model_options()
    options[OTHER] = "Other: a model folder"
    if st.session_state.get("memory.model") not in options:
        st.session_state["memory.model"] = next(iter(options))
    spec = st.sidebar.selectbox(
        "Memory network", list(options), format_func=options.get, key="memory.model"
    )
    if spec != OTHER:
        return spec
    if len(options) == 1:
        st.sidebar.caption(
            "No bundled story-entnet or story-memn2n is installed and none was trained in this "
            "session."
        )
    folder = st.sidebar.text_input(
        "Model folder",
        key="memory.folder",
        help="A folder written by 'stmem-viz train' or the Train page: config.json, "
        "model.safetensors and vocab.json.",
    )
    if not folder.strip():
        st.info(
            "Choose a memory network in the sidebar: type the folder of a trained EntNet or "
            "MemN2N, or train one on the Train page."
        )
        return None
    return folder.strip()


def _stamp(spec: str) -> float:
    """The weights' modification time, so that a retrained folder is not served from cache."""
    if spec.startswith("bundled:"):
        return 0.0
    try:
        return (Path(spec) / "model.safetensors").stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner="Loading the memory network…", max_entries=8)
def _load(spec: str, stamp: float) -> StoryModel:
    return load_story_model(spec, device="cpu")


def load_model(spec: str) -> StoryModel:
    """The model of ``spec`` on the CPU, loaded once per server.

    Raises:
        StmemError: the model cannot be loaded.
    """
    return _load(spec, _stamp(spec))


@st.cache_data(show_spinner="Running the memory network…", max_entries=64)
def trace(
    spec: str, sentences: tuple[str, ...], question: str, ablation: tuple[int, ...] = ()
) -> EntNetTrace | MemN2NTrace:
    """The model's trace of one story; ``ablation`` silences slots (EntNet) or drops sentences
    (MemN2N, 0-based).

    Raises:
        StmemError: a bad story or ablation index.
    """
    model = load_model(spec)
    key = "silence_slots" if model.family == "entnet" else "drop_sentences"
    return model.trace(list(sentences), question, **{key: list(ablation)})


def story_key(spec: str, story: analysis.StoryInput) -> str:
    """A short digest of the model and the story, the cache key of everything derived from them.

    Streamlit hashes cache arguments on every call; hashing one short string instead of the
    sentences keeps reruns fast. Functions below take the story as ``_story`` (not hashed).
    """
    text = json.dumps([spec, _stamp(spec), list(story.sentences), story.question, story.answer])
    return hashlib.sha256((text + repr(story.support)).encode()).hexdigest()[:32]


def _full_trace(spec: str, story: analysis.StoryInput) -> EntNetTrace | MemN2NTrace:
    return trace(spec, story.sentences, story.question)


@st.cache_data(show_spinner="Comparing slots with entity words…", max_entries=32)
def similarity(spec: str, key: str, _story: analysis.StoryInput) -> tuple[list[str], np.ndarray]:
    """Entity words and the ``[S, N, E]`` cosine similarity of each slot to each of them."""
    model = load_model(spec)
    words = [w for group in analysis.entity_words(model.vocab).values() for w in group]
    return words, analysis.slot_entity_similarity(model, _full_trace(spec, _story), words)


@st.cache_data(show_spinner="Asking the question after every sentence…", max_entries=32)
def recall(spec: str, key: str, _story: analysis.StoryInput, answer_id: int) -> np.ndarray:
    """``[S]`` probability of the answer ``answer_id`` after each sentence."""
    return analysis.recall_over_time(load_model(spec), _full_trace(spec, _story), answer_id)


@st.cache_resource(max_entries=16)
def timeline_figure(spec: str, key: str, _story: analysis.StoryInput) -> go.Figure:
    """The write timeline of an EntNet story (shared; do not modify)."""
    result = _full_trace(spec, _story)
    return figures.write_timeline(result.gates, result.sentences, support_indexes(_story))


@st.cache_resource(max_entries=16)
def entity_figure(spec: str, key: str, _story: analysis.StoryInput, entity: str) -> go.Figure:
    """Slots resembling one entity word over the story (shared; do not modify)."""
    words, sims = similarity(spec, key, _story)
    column = sims[:, :, words.index(entity)]
    return figures.entity_over_time(column, _story.sentences, entity, support_indexes(_story))


@st.cache_resource(max_entries=16)
def answer_figure(spec: str, key: str, _story: analysis.StoryInput, answer: str) -> go.Figure:
    """The final answer distribution, ``answer`` highlighted (shared; do not modify)."""
    probs = _full_trace(spec, _story).answer_probs
    return figures.answer_bars(probs, load_model(spec).vocab.words, answer=answer)


@st.cache_resource(max_entries=16)
def read_figure(spec: str, key: str, _story: analysis.StoryInput) -> go.Figure:
    """An EntNet's read attention over its final slots (shared; do not modify)."""
    return figures.read_attention_bars(_full_trace(spec, _story).read_attention)


@st.cache_resource(max_entries=16)
def hop_figure(spec: str, key: str, _story: analysis.StoryInput) -> go.Figure:
    """A MemN2N's sentence x hop attention (shared; do not modify)."""
    result = _full_trace(spec, _story)
    return figures.hop_attention_heatmap(
        result.hop_attention, result.sentences, support_indexes(_story), result.in_memory
    )


@st.cache_resource(max_entries=16)
def recall_figure(spec: str, key: str, _story: analysis.StoryInput, answer_id: int) -> go.Figure:
    """Recall of one answer over the story (shared; do not modify)."""
    curve = recall(spec, key, _story, answer_id)
    answer = load_model(spec).vocab.words[answer_id]
    return figures.recall_curve(curve, _story.sentences, answer, support_indexes(_story))


@st.cache_resource(max_entries=32)
def ablation(
    spec: str, key: str, _story: analysis.StoryInput, index: int, answer_id: int
) -> tuple[go.Figure, analysis.AblationEffect, str]:
    """Silence slot ``index`` (EntNet) or remove sentence ``index`` (MemN2N, 0-based).

    Returns:
        The side-by-side answer figure (shared; do not modify), the effect on ``answer_id``, and
        the ablation in words.
    """
    model = load_model(spec)
    full = _full_trace(spec, _story)
    ablated = trace(spec, _story.sentences, _story.question, (index,))
    what = f"slot {index} silenced" if model.family == "entnet" else f"sentence {index + 1} removed"
    effect = analysis.ablation_effect(
        full.answer_probs, ablated.answer_probs, answer_id, model.vocab
    )
    figure = figures.ablation_bars(
        full.answer_probs,
        ablated.answer_probs,
        model.vocab.words,
        what,
        answer=model.vocab.words[answer_id],
    )
    return figure, effect, what


def support_indexes(story: analysis.StoryInput) -> list[int]:
    """0-based supporting facts of a story."""
    return [i - 1 for i in story.support if 1 <= i <= len(story.sentences)]


def prepare_step(key: str, n: int) -> bool:
    """Keep the step in ``1..n``, show the last sentence of each new story, and say whether the
    step view should play (advance by itself).

    Args:
        key: the story's :func:`story_key`.
        n: number of sentences.
    """
    if st.session_state.get("memory.step_story") != key:
        st.session_state["memory.step_story"] = key
        st.session_state["memory.step"] = n
        st.session_state["memory.playing"] = False
    if not 1 <= st.session_state.get("memory.step", n) <= n:
        st.session_state["memory.step"] = n
    return bool(st.session_state.get("memory.playing")) and n > 1


def _toggle_play(n: int) -> None:
    start = not st.session_state.get("memory.playing", False)
    if start and st.session_state.get("memory.step", n) >= n:
        st.session_state["memory.step"] = 1
    st.session_state["memory.playing"] = start
    st.session_state["memory.play_started"] = start


def _pause() -> None:
    st.session_state["memory.playing"] = False


def step_controls(n: int, timer_on: bool) -> int:
    """The sentence slider and the Play/Pause button; call inside the step fragment.

    While playing, every run of the fragment (its timer fires every ``PLAY_SECONDS``) moves one
    sentence on, and playing stops at the last sentence. Moving the slider pauses.

    Args:
        n: number of sentences.
        timer_on: whether the fragment was started with its timer (see :func:`prepare_step`).

    Returns:
        The chosen sentence, 0-based.
    """
    playing = bool(st.session_state.get("memory.playing")) and n > 1
    if playing != timer_on:
        st.rerun(scope="app")  # start or stop the fragment's timer
    if playing and not st.session_state.pop("memory.play_started", False):
        if st.session_state["memory.step"] >= n:
            st.session_state["memory.playing"] = False
            st.rerun(scope="app")
        st.session_state["memory.step"] += 1
    left, right = st.columns([6, 1])
    if n > 1:
        left.slider("Sentence", 1, n, key="memory.step", on_change=_pause)
    right.button(
        "Pause" if playing else "Play",
        key=PLAY_BUTTON,
        on_click=_toggle_play,
        args=(n,),
        disabled=n < 2,
    )
    return int(st.session_state["memory.step"]) - 1


def _bump_seed() -> None:
    st.session_state["memory.seed"] = int(st.session_state.get("memory.seed", 0)) + 1


def _choose(stories: list[analysis.StoryInput], where: str) -> analysis.StoryInput:
    if len(stories) == 1:
        return stories[0]
    if st.session_state.get("memory.story_index", 0) >= len(stories):
        st.session_state["memory.story_index"] = 0
    index = st.selectbox(
        f"Story in the {where} ({len(stories)} questions)",
        range(len(stories)),
        format_func=lambda i: f"{i + 1}. {stories[i].label}",
        key="memory.story_index",
    )
    return stories[index]


def story_picker() -> analysis.StoryInput | None:
    """Widgets that choose the story; None after showing an error the user can act on."""
    source = st.radio("Story from", SOURCES, horizontal=True, key="memory.source")
    try:
        if source == SOURCES[0]:
            for key, value in (("memory.task", 1), ("memory.length", 12), ("memory.seed", 0)):
                st.session_state.setdefault(key, value)
            columns = st.columns([2, 3, 2, 2])
            task = columns[0].selectbox(
                "bAbI task",
                TASKS,
                key="memory.task",
                format_func=lambda t: {1: "1: one fact", 2: "2: two facts", 3: "3: three facts"}[t],
            )
            length = columns[1].slider("Sentences", 3, MAX_GENERATED, key="memory.length")
            seed = columns[2].number_input("Seed", 0, 10**6, key="memory.seed")
            columns[3].button("New story", on_click=_bump_seed, key=NEW_STORY_BUTTON)
            return analysis.generated_story(int(task), int(length), int(seed))
        if source == SOURCES[1]:
            st.session_state.setdefault("memory.text", EXAMPLE_TEXT)
            text = st.text_area(
                "Story: one sentence per line, ending with the question (bAbI format works too)",
                key="memory.text",
                height=150,
            )
            return _choose(analysis.stories_from_text(text), "text")
        upload = st.file_uploader(
            "Story file: bAbI format, or one sentence per line ending with a question",
            type=["txt"],
            key="memory.upload",
        )
        if upload is None:
            st.info("Upload a story file to continue.")
            return None
        return _choose(analysis.stories_from_bytes(upload.getvalue(), upload.name), "file")
    except StmemError as error:
        st.error(escape_markdown(str(error)))
        return None
