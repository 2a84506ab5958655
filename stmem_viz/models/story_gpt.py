"""story-gpt: a small decoder-only Transformer that answers bAbI questions.

The model is a Llama-style causal language model from Hugging Face transformers (rotary
positions, grouped-query attention) trained on stories of bAbI tasks 1-3 (Weston et al., 2015,
"Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks"). It reads a story
and a question as one token sequence::

    <bos> mary went to the kitchen . where is mary ? kitchen <eos>

and its next-token distribution after ``?`` is its answer distribution. The tokenizer is a
``tokenizers`` WordLevel model over :func:`stmem_viz.data.default_vocabulary`, with the same ids,
so the Transformer and the memory networks share one vocabulary. The tokenizer adds ``<bos>``
itself; :func:`format_prompt` writes the text without it. Unknown words map to ``<unk>``.

Training reads each generated story once with a question after every sentence (as bAbI files
interleave them). Each question reads only the story told before it and its own tokens, and
rotary positions continue the story's count, so every answer is computed exactly as it would
be for the prompt alone; one pass over a story of n sentences trains about n answers. The
batch puts the story first and the questions after it, and attention is computed only where
it is allowed (:mod:`stmem_viz.models.question_layout`).

Loss: cross-entropy on each answer token, plus three attention losses that use bAbI's
supporting-fact ids (the "strong supervision" they allow, Weston et al., 2015). Each trains one
head per key/value group to put its attention on given tokens:

- ``support_weight`` (10), layer 1, from the question's "?": the question's subject word (the
  actor of task 1, the object of tasks 2 and 3) in its supporting sentences. That is the first
  hop: "mary" in "Mary went to the kitchen" for "Where is Mary?", "milk" in "John took the
  milk" for "Where is the milk?".
- ``state_weight`` (1), layer 1, from each story sentence's final ".": the latest earlier
  sentence in which that sentence's actor moved. With ``location_weight`` (1), a cross-entropy
  that makes each sentence's "." predict where its actor is after it, a sentence's "." carries
  where its actor is, so "John dropped the milk." knows where the milk now lies.
- ``readout_weight`` (1), layer 2, from the "?": the final "." of the sentences that then tell
  the answer (:func:`_readout_facts`): the question's last supporting sentence (for "Where is
  the milk?", the later of "John took the milk" and John's latest move, or the drop) and the
  same actor's later sentences before it moves again; in task 3, only the move into the place
  asked about.

The main epochs draw the tasks in :data:`DEFAULT_TASK_SHARES`.

Both hops once took whole sentences as targets (``support_at_subject`` and ``readout_at_stop``
False, support weight 3). Runs of that recipe reached 0.80 to 0.95 on task 2. In the runs that
failed, the first-hop heads had learnt to read every sentence about any object: 0.44 of their
attention on the right sentence in stories of 13-20 sentences, 0.42 on sentences about the
other objects. The runs that succeeded read the object's own word (all of their attention on
it). The subject word as the target leaves no credit for reading other objects' sentences; at
weight 10 the first hop kept 0.997 of its attention on the right word in every run.
The second hop, on whole sentences, read their object word too and lost to distance; on the
"." (where the location is), task 2 reached 0.972 on the questions whose first hop was right,
against 0.915 without (one run each, weight 3). The second hop still varies with the seed: on
one thread, seeds 0, 1 and 2 give 0.977, 0.875 and 0.940 on task 2 (seed 1 reads other actors'
sentences); seed 1 with ``readout_weight`` 3 gave 0.974, in one run. The bundled model is these
defaults, seed 0 on two threads: 1.000 / 0.968 / 0.825 (tasks 1-3, n = 1000). The run has a
fixed number of steps, so the same thread count repeats it exactly.

Without these losses, a model this small sits for thousands of steps on a plateau where it
answers with the most recent location; with them, the actor-matching heads form within a few
hundred steps. A short curriculum on short stories (:data:`DEFAULT_CURRICULUM`) comes first.
The supervised heads are the ones to look at on the Attention page, which names them (see
:func:`trained_readers`). An optional next-token loss on the story tokens (``lm_weight``) is off by
default. Only the answer is evaluated.

Saved models are standard ``save_pretrained`` folders (``config.json`` without custom keys,
``model.safetensors``, ``tokenizer.json``) plus ``training.json``, so the Auto classes reload
them offline.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import random
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers import models as tokenizer_models
from transformers import (
    AttentionInterface,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from stmem_viz import StmemError
from stmem_viz.data import (
    ACTORS,
    BOS,
    EOS,
    LOCATIONS,
    PAD,
    UNK,
    Story,
    Vocabulary,
    default_vocabulary,
    generate_stories,
    generate_story_series,
    read_babi,
)
from stmem_viz.data.vocab import PUNCTUATION
from stmem_viz.data.world import MIN_SENTENCES
from stmem_viz.models.device import resolve_device
from stmem_viz.models.question_layout import (
    SupervisedWeights,
    build_layout,
    layout_attention,
    layout_rows,
)
from stmem_viz.models.training import ProgressFn, TrainProgress, TrainResult

log = logging.getLogger(__name__)

DEFAULT_SIZES: dict[str, int | float | bool] = {
    "hidden_size": 96,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 1024,
    "rope_theta": 10000.0,
    "initializer_range": 0.1,
    "attention_bias": True,
}
"""Architecture of a new model (``LlamaConfig`` fields); ``sizes`` arguments override any of them.
These, with the defaults of :func:`train_story_gpt`, are the settings of the bundled model.

Attention biases (content-independent query and key components, which make positional heads
easy under rotary positions) and an initialisation of 0.1 shortened the plateau of a
two-sentence probe ("A went to the X. B went to the Y. Where is A?") from over 6000 steps
(Llama's defaults: 0.02, no biases) to about 1500. Heads of 32 dimensions keep enough slowly
rotating pairs for matching words by content at any distance."""


DEFAULT_CURRICULUM: tuple[tuple[int, tuple[int, ...], int, int], ...] = (
    (300, (1,), 4, 4),
    (400, (1, 2, 3), 8, 2),
)
"""Stages before the epochs: (optimiser steps, tasks, longest story, questions per sentence).
With the support loss, the first stage (task 1, stories of at most four sentences, every actor
asked about after every sentence) forms the actor-matching heads in about 200 steps. Asking
about every actor makes "the most recent location" a poor answer: with one question per
sentence, one data seed in two stalled on that plateau. The second stage carries the heads to
objects (tasks 2 and 3) on short stories."""

DEFAULT_TASK_SHARES: dict[int, float] = {1: 0.5, 2: 1.5, 3: 1.0}
"""Generated training stories of each task, as a multiple of ``n_stories`` (tasks not listed:
1). Task 1 is learned within the curriculum; the main epochs go mostly to the two-hop task 2."""

TRAINING_ATTENTION = "stmem_story_training"
"""Attention implementation used while training (see :func:`_training_attention`)."""

StoryInput = tuple[Sequence[str], str]
"""A story as (sentences, question)."""


def build_story_tokenizer(vocab: Vocabulary | None = None) -> PreTrainedTokenizerFast:
    """A Hugging Face tokenizer whose ids are exactly the vocabulary's ids.

    It lower-cases text, splits on whitespace and isolates ``. ? , !`` the way
    :func:`stmem_viz.data.tokenize` does, and puts ``<bos>`` before every sequence.
    """
    vocab = vocab or default_vocabulary()
    for special in (PAD, UNK, BOS, EOS):
        if vocab.id(special) == vocab.unk_id and special != UNK:
            raise StmemError(f"The vocabulary lacks the special word '{special}'.")
    word_ids = {word: i for i, word in enumerate(vocab.words)}
    backend = Tokenizer(tokenizer_models.WordLevel(vocab=word_ids, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(f"[{PUNCTUATION}]"), behavior="isolated"),
        ]
    )
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab.id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=DEFAULT_SIZES["max_position_embeddings"],
        padding_side="right",
    )


def build_story_gpt(
    sizes: dict | None = None, vocab: Vocabulary | None = None
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A freshly initialised story-gpt and its tokenizer.

    Args:
        sizes: overrides of :data:`DEFAULT_SIZES` (any ``LlamaConfig`` size field listed there).
        vocab: the word vocabulary; :func:`default_vocabulary` if None.

    Raises:
        StmemError: an unknown size name, or key/value heads that do not divide the heads.
    """
    vocab = vocab or default_vocabulary()
    unknown = set(sizes or {}) - set(DEFAULT_SIZES)
    if unknown:
        raise StmemError(
            f"Unknown story-gpt size(s) {sorted(unknown)}; known sizes: {sorted(DEFAULT_SIZES)}."
        )
    merged = {**DEFAULT_SIZES, **(sizes or {})}
    heads, kv_heads = merged["num_attention_heads"], merged["num_key_value_heads"]
    if heads % kv_heads:
        raise StmemError(
            f"Key/value heads must divide attention heads; got {heads} and {kv_heads}."
        )
    config = LlamaConfig(
        vocab_size=len(vocab),
        pad_token_id=vocab.id(PAD),
        bos_token_id=vocab.id(BOS),
        eos_token_id=vocab.id(EOS),
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        **merged,
    )
    model = LlamaForCausalLM(config)
    tokenizer = build_story_tokenizer(vocab)
    tokenizer.model_max_length = merged["max_position_embeddings"]
    return model, tokenizer


def format_prompt(sentences: Sequence[str], question: str) -> str:
    """The text the model reads before answering: the sentences, then the question.

    A sentence without final punctuation gets a period. The tokenizer adds ``<bos>``.

    >>> format_prompt(["Mary went to the kitchen"], "Where is Mary?")
    'Mary went to the kitchen. Where is Mary?'
    """
    parts = [s.strip() if s.strip()[-1:] in ".?!" else s.strip() + "." for s in sentences]
    parts = [p for p in parts if p != "."]
    question = question.strip()
    if not question.endswith("?"):
        question += "?"
    return " ".join([*parts, question])


def _prompt_ids(
    tokenizer: PreTrainedTokenizerFast, stories: Sequence[StoryInput]
) -> list[list[int]]:
    prompts = [format_prompt(sentences, question) for sentences, question in stories]
    return tokenizer(prompts, add_special_tokens=True)["input_ids"]


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [B, T]
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


@torch.no_grad()
def answer_probs(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    stories: Sequence[StoryInput],
    batch_size: int = 64,
) -> np.ndarray:
    """Next-token probabilities after each story's prompt: the model's answer distribution.

    Args:
        model: a story-gpt (or any causal LM sharing the tokenizer's ids).
        tokenizer: its tokenizer.
        stories: (sentences, question) pairs.
        batch_size: stories per forward pass.

    Returns:
        ``[n, vocab_size]`` float32 probabilities; column ``i`` is the word with id ``i``.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = _prompt_ids(tokenizer, stories)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together
    out = np.zeros((len(ids), model.config.vocab_size), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        rows = [ids[i] for i in chunk]
        input_ids = _pad(rows, tokenizer.pad_token_id).to(device)  # [B, T]
        # Right padding: causal attention keeps each prompt's last position unaffected by pads.
        logits = model(input_ids=input_ids).logits  # [B, T, V]
        last = torch.tensor([len(r) - 1 for r in rows], device=device)
        probs = logits[torch.arange(len(rows), device=device), last].float().softmax(-1)
        out[chunk] = probs.cpu().numpy()
    model.train(was_training)
    return out


def _accuracy(model, tokenizer, stories: Sequence[Story], batch_size: int = 128) -> float:
    if not stories:
        return float("nan")
    probs = answer_probs(
        model, tokenizer, [(s.sentences, s.question.text) for s in stories], batch_size
    )
    targets = np.array([tokenizer.convert_tokens_to_ids(s.question.answer) for s in stories])
    return float((probs.argmax(-1) == targets).mean())


def evaluate_story_gpt(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    tasks: Sequence[int],
    n: int,
    seed: int,
    babi_file: str | Path | None = None,
    max_sentences: int = 20,
) -> list[dict]:
    """Accuracy of the model's most likely next token as the answer, per task.

    Args:
        tasks: bAbI task numbers to evaluate.
        n: stories per task (from ``babi_file``: at most the first ``n`` of each task).
        seed: seed of the generated stories (ignored with ``babi_file``).
        babi_file: evaluate on this bAbI file instead of generated stories.
        max_sentences: longest generated story (lengths are uniform from 2).

    Returns:
        One dict per task: ``model`` (the model's name or path), ``task``, ``n`` (stories
        evaluated) and ``accuracy``.
    """
    name = getattr(model.config, "_name_or_path", "") or "story-gpt"
    file_stories = read_babi(babi_file) if babi_file is not None else None
    rows = []
    for task in tasks:
        if file_stories is not None:
            stories = [s for s in file_stories if s.question.task == task][:n]
        else:
            stories = generate_stories(task, n, seed=seed, max_sentences=max_sentences)
        accuracy = _accuracy(model, tokenizer, stories)
        rows.append({"model": name, "task": task, "n": len(stories), "accuracy": accuracy})
    return rows


def load_babi_training_set(
    babi_dir: str | Path, tasks: Sequence[int], split: str = "train"
) -> list[Story]:
    """Stories of the given tasks from a folder of bAbI files (``qa1_*_train.txt`` ...).

    Raises:
        StmemError: the folder lacks the file of a requested task.
    """
    folder = Path(babi_dir)
    stories: list[Story] = []
    for task in tasks:
        found = sorted(folder.glob(f"qa{task}_*_{split}.txt"))
        if not found:
            raise StmemError(
                f"No bAbI file qa{task}_*_{split}.txt in {folder}; point babi_dir at the folder "
                "of the English bAbI tasks (e.g. tasks_1-20_v1-2/en)."
            )
        stories += read_babi(found[0])
    return stories


@dataclass
class _Packed:
    """One story read once with all its questions, as a single training sequence.

    Questions are inserted after the sentence they follow. A story token attends to earlier
    story tokens only; a question token attends to the story told so far and to its own
    question. Positions of a question continue from the story so far, so each answer is
    computed exactly as if its prompt were fed alone (the inference format).

    Attributes:
        ids: ``[T]`` token ids.
        positions: ``[T]`` rotary positions.
        block: ``[T]`` -1 for story tokens, else the index of the question a token belongs to.
        targets: ``[T]`` the next story token for story tokens, ``<eos>`` for answer tokens,
            -100 elsewhere.
        answers: (index of a question's "?" token, answer id) pairs.
        supports: per answer, the indices of the tokens of its first hop: the supporting
            sentences that name the question's subject (the actor of task 1, the object of
            tasks 2 and 3).
        support_words: per answer, the indices of the question's subject word in those
            sentences.
        readouts: per answer, the indices of the tokens of the sentences whose "." tells the
            answer once it knows where its actor is (:func:`_readout_facts`): its second hop.
        readout_stops: per answer, the indices of those sentences' final "." tokens.
        states: (index of a sentence's final ".", indices of the tokens of the latest earlier
            sentence in which the same actor moved) for each sentence that has one: where its
            actor was before it.
        whereabouts: (index of a sentence's final ".", id of the location its actor is in after
            the sentence) for each sentence whose actor has a known location.
        about_object: per answer, whether its subject is an object (tasks 2 and 3) rather than
            an actor.
    """

    ids: list[int]
    positions: list[int]
    block: list[int]
    targets: list[int]
    answers: list[tuple[int, int]]
    supports: list[list[int]]
    support_words: list[list[int]]
    readouts: list[list[int]]
    readout_stops: list[list[int]]
    states: list[tuple[int, list[int]]]
    whereabouts: list[tuple[int, int]]
    about_object: list[bool]


def _group_series(stories: Sequence[Story]) -> list[list[Story]]:
    """Group consecutive stories whose sentences extend the previous one's (bAbI files)."""
    groups: list[list[Story]] = []
    for story in stories:
        last = groups[-1][-1] if groups else None
        n = len(last.sentences) if last is not None else 0
        if last is not None and story.sentences[:n] == last.sentences:
            groups[-1].append(story)
        else:
            groups.append([story])
    return groups


def _cut_series(train: Sequence[Sequence[Story]], max_sentences: int) -> list[list[Story]]:
    """Each series cut to the questions asked within its first ``max_sentences`` sentences."""
    cut = [[s for s in series if len(s.sentences) <= max_sentences] for series in train]
    return [series for series in cut if series]


def _readout_facts(
    story: Story, words: Sequence[Sequence[int]], actors: set[int], locations: set[int]
) -> list[int]:
    """The sentences (1-based) whose "." holds the answer once it knows where its actor is: the
    last supporting fact, and (tasks 1 and 2) the later sentences of the same actor before that
    actor moves again, which tell the same place. Task 3 asks where the actor was before the
    last fact, which only that fact's "." recalls."""
    if not story.question.support:
        return []
    last = max(story.question.support)
    facts = [last]
    actor = words[last - 1][0] if words[last - 1] else None
    if story.question.task == 3 or actor not in actors:
        return facts
    for k in range(last + 1, len(story.sentences) + 1):
        if words[k - 1][:1] == [actor]:
            if locations.intersection(words[k - 1]):
                break
            facts.append(k)
    return facts


def _pack(tokenizer, series: Sequence[Story]) -> _Packed:
    """Lay out a question series (stories that extend one another, shortest first)."""
    full = series[-1].sentences
    sentences = tokenizer([format_prompt([s], "?")[:-2] for s in full], add_special_tokens=False)
    questions = tokenizer([s.question.text for s in series], add_special_tokens=False)
    asked_after: dict[int, list[int]] = {}
    for q, story in enumerate(series):
        asked_after.setdefault(len(story.sentences), []).append(q)

    actors = set(tokenizer.convert_tokens_to_ids([a.lower() for a in ACTORS]))
    locations = set(tokenizer.convert_tokens_to_ids(list(LOCATIONS)))
    asking = set(tokenizer.convert_tokens_to_ids(["where", "is", "was", "the"]))
    last_move: dict[int, int] = {}  # actor id -> the latest sentence in which it moved

    p = _Packed([tokenizer.bos_token_id], [0], [-1], [], [], [], [], [], [], [], [], [])
    story_at = [0]  # layout index of each story token
    spans: list[list[int]] = [[]]  # layout indices of the tokens of sentence k (1-based)
    ends: list[int] = []  # layout index of each answer token
    for k in range(len(full) + 1):
        if k > 0:
            spans.append([])
        for token in sentences["input_ids"][k - 1] if k > 0 else []:
            spans[k].append(len(p.ids))
            story_at.append(len(p.ids))
            p.ids.append(token)
            p.positions.append(len(story_at) - 1)
            p.block.append(-1)
        if k > 0:
            words = sentences["input_ids"][k - 1]
            actor = words[0] if words and words[0] in actors else None
            if actor in last_move:
                p.states.append((spans[k][-1], spans[last_move[actor]]))
            if actor is not None and locations.intersection(words):
                last_move[actor] = k
            if actor in last_move:
                moved = sentences["input_ids"][last_move[actor] - 1]
                p.whereabouts.append((spans[k][-1], next(w for w in moved if w in locations)))
        for q in asked_after.get(k, []):
            for offset, token in enumerate(questions["input_ids"][q]):
                p.ids.append(token)
                p.positions.append(len(story_at) + offset)
                p.block.append(q)
            answer = tokenizer.convert_tokens_to_ids(series[q].question.answer.lower())
            p.answers.append((len(p.ids) - 1, answer))
            subject = next((w for w in questions["input_ids"][q] if w not in asking), None)
            p.about_object.append(subject not in actors)
            facts = [spans[fact] for fact in series[q].question.support]
            p.supports.append(
                [at for span in facts if subject in map(p.ids.__getitem__, span) for at in span]
            )
            p.support_words.append([at for at in p.supports[-1] if p.ids[at] == subject])
            read = _readout_facts(series[q], sentences["input_ids"], actors, locations)
            p.readouts.append([at for fact in read for at in spans[fact]])
            p.readout_stops.append([spans[fact][-1] for fact in read])
            # The answer is read too, so the model learns to end with <eos> after it.
            p.ids.append(answer)
            p.positions.append(len(story_at) + len(questions["input_ids"][q]))
            p.block.append(q)
            ends.append(len(p.ids) - 1)
    p.targets = [-100] * len(p.ids)
    for here, following in zip(story_at, story_at[1:], strict=False):
        p.targets[here] = p.ids[following]
    for here in ends:
        p.targets[here] = tokenizer.eos_token_id
    return p


def _collate(packed: Sequence[_Packed], pad_id: int, device) -> dict:
    """Padded inputs, layout and targets of a batch, each row's story first, then its questions.

    See :mod:`stmem_viz.models.question_layout`. Indices into a row: ``answer_at``,
    ``state_at`` and ``where_at`` index the whole row (``answer_at`` lies in the question
    part, the others in the story part); ``answer_q`` is ``answer_at`` within the question
    part; the ``support``, ``readout`` and ``state`` targets are masks over the story part.
    """
    rows = [layout_rows(p.block) for p in packed]
    story = max(int(is_story.sum()) for _, is_story, _, _ in rows)
    questions = max(max(int((~is_story).sum()) for _, is_story, _, _ in rows), 1)
    width = story + questions
    ids = torch.full((len(packed), width), pad_id, dtype=torch.long)  # [B, T]
    positions = torch.zeros((len(packed), width), dtype=torch.long)  # [B, T]
    targets = torch.full((len(packed), width), -100, dtype=torch.long)  # [B, T]
    n_answers = sum(len(p.answers) for p in packed)
    support = torch.zeros((n_answers, story), dtype=torch.bool)  # [Q, S]
    support_word = torch.zeros((n_answers, story), dtype=torch.bool)  # [Q, S]
    readout = torch.zeros((n_answers, story), dtype=torch.bool)  # [Q, S]
    readout_stop = torch.zeros((n_answers, story), dtype=torch.bool)  # [Q, S]
    state = torch.zeros((sum(len(p.states) for p in packed), story), dtype=torch.bool)  # [R, S]
    answer_rows, answer_at, answer_ids, about_object = [], [], [], []
    state_rows, state_at = [], []
    where_rows, where_at, where_ids = [], [], []
    for i, (p, (new_index, is_story, _, _)) in enumerate(zip(packed, rows, strict=True)):
        place = torch.as_tensor(np.where(is_story, new_index, story + new_index))  # [T_i]
        ids[i, place] = torch.tensor(p.ids)
        positions[i, place] = torch.tensor(p.positions)
        targets[i, place] = torch.tensor(p.targets)
        for (at, answer), facts, words, read, stops in zip(
            p.answers, p.supports, p.support_words, p.readouts, p.readout_stops, strict=True
        ):
            support[len(answer_rows), new_index[facts]] = True
            support_word[len(answer_rows), new_index[words]] = True
            readout[len(answer_rows), new_index[read]] = True
            readout_stop[len(answer_rows), new_index[stops]] = True
            answer_rows.append(i)
            answer_at.append(int(place[at]))
            answer_ids.append(answer)
        about_object += p.about_object
        for at, before in p.states:
            state[len(state_rows), new_index[before]] = True
            state_rows.append(i)
            state_at.append(int(place[at]))
        for at, location in p.whereabouts:
            where_rows.append(i)
            where_at.append(int(place[at]))
            where_ids.append(location)
    layout = build_layout(
        [told for _, _, told, _ in rows],
        [starts for _, _, _, starts in rows],
        story,
        questions,
    )

    def longs(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return {
        "input_ids": ids.to(device),
        "position_ids": positions.to(device),
        "layout": layout.to(device),
        "targets": targets.to(device),
        "answer_rows": longs(answer_rows),
        "answer_at": longs(answer_at),
        "answer_q": longs([at - story for at in answer_at]),
        "answer_ids": longs(answer_ids),
        "about_object": torch.tensor(about_object, dtype=torch.bool, device=device),
        "support": support.to(device),
        "support_word": support_word.to(device),
        "readout": readout.to(device),
        "readout_stop": readout_stop.to(device),
        "state_rows": longs(state_rows),
        "state_at": longs(state_at),
        "state": state.to(device),
        "where_rows": longs(where_rows),
        "where_at": longs(where_at),
        "where_ids": longs(where_ids),
    }


def _batches(packed: list[_Packed], batch_size: int, rng: random.Random) -> list[list[_Packed]]:
    """Shuffled batches of sequences of similar length (less padding)."""
    order = list(range(len(packed)))
    rng.shuffle(order)
    pool = batch_size * 32
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: len(packed[i].ids))
        batches += [
            [packed[i] for i in chunk[b : b + batch_size]] for b in range(0, len(chunk), batch_size)
        ]
    rng.shuffle(batches)
    return batches


def _forward(
    model, batch: dict, layers: Collection[int] = ()
) -> tuple[torch.Tensor, dict[int, SupervisedWeights]]:
    """Logits ``[B, T, V]`` of a collated batch, and the attention weights over the story of
    the given layers (each must have been marked by :func:`_supervise`)."""
    assert model.config._attn_implementation == TRAINING_ATTENTION, "call _supervise first"
    attentions = [layer.self_attn for layer in model.model.layers]
    for module in attentions:
        module.stmem_layout = batch["layout"]
    try:
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        weights = {layer: attentions[layer].stmem_weights for layer in layers}
    finally:
        for module in attentions:
            module.stmem_layout = None
            module.stmem_weights = None
    return logits, weights


def _loss(
    model,
    batch: dict,
    lm_weight: float,
    support_weight: float = 0.0,
    readout_weight: float = 0.0,
    state_weight: float = 0.0,
    location_weight: float = 0.0,
    objects_apart: bool = False,
    readout_at_stop: bool = False,
    support_at_subject: bool = False,
) -> torch.Tensor:
    given = {"support": support_weight, "readout": readout_weight, "state": state_weight}
    layers = _supervised_layers(model.config, *given.values())
    logits, weights = _forward(model, batch, set(layers.values()))  # [B, T, V]
    answer_logits = logits[batch["answer_rows"], batch["answer_at"]]  # [Q, V]
    loss = F.cross_entropy(answer_logits, batch["answer_ids"])
    if lm_weight > 0:
        lm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1))
        loss = loss + lm_weight * lm
    if location_weight > 0 and len(batch["where_at"]):
        where_logits = logits[batch["where_rows"], batch["where_at"]]  # [R, V]
        loss = loss + location_weight * F.cross_entropy(where_logits, batch["where_ids"])
    shape, device = _head_shape(model.config), logits.device
    heads = {
        name: torch.tensor(where(*shape)[1], device=device) for name, where in LOSS_HEADS.items()
    }
    # The narrow targets need the hops on two layers: one set of heads cannot read both the
    # subject word and the "." (a two-layer model supervises both in its last layer).
    split_hops = _narrow_hops(shape)
    for name, layer in layers.items():
        if name == "state":
            read, rows, at = weights[layer].story, batch["state_rows"], batch["state_at"]
        else:
            read, rows, at = weights[layer].questions, batch["answer_rows"], batch["answer_q"]
        trained = heads[name].expand(len(rows), -1)  # [Q, h]
        if name in ("support", "readout") and objects_apart:
            apart = torch.tensor(object_heads(*shape)[1], device=device)
            trained = torch.where(batch["about_object"][:, None], apart, trained)
        target = batch[name]
        if name == "readout" and readout_at_stop and split_hops:
            target = batch["readout_stop"]
        if name == "support" and support_at_subject and split_hops:
            target = batch["support_word"]
        loss = loss + given[name] * _attention_loss(read, rows, at, target, trained)
    return loss


def _attention_loss(
    weights: torch.Tensor,
    rows: torch.Tensor,
    at: torch.Tensor,
    target: torch.Tensor,
    heads: list[int] | torch.Tensor,
) -> torch.Tensor:
    """Mean -log of the attention that the given heads pay, from each query token, to its
    target tokens.

    Args:
        weights: ``[B, H, T_q, T_k]`` attention weights of one layer (queries, keys).
        rows: ``[Q]`` the batch row of each query token.
        at: ``[Q]`` its query index (a question's "?", or a sentence's ".").
        target: ``[Q, T_k]`` the tokens each query token's heads should read.
        heads: the heads trained, the same for every query, or ``[Q, h]`` per query.
    """
    heads = torch.as_tensor(heads, device=weights.device)
    heads = heads.expand(len(rows), -1) if heads.dim() == 1 else heads  # [Q, h]
    read = weights[rows[:, None], heads, at[:, None]]  # [Q, h, T]
    mass = (read * target[:, None]).sum(-1)  # [Q, h]
    # A question without target tokens (a bAbI file whose facts never name the answer) adds
    # nothing.
    has_target = target.any(-1)  # [Q]
    if not has_target.any():
        return mass.sum() * 0
    return -torch.log(mass[has_target].clamp_min(1e-6)).mean()


def _narrow_hops(shape: tuple[int, int, int]) -> bool:
    """Whether the two hops of a model of this (layers, heads, key/value heads) shape are on
    different layers, so that ``support_at_subject`` and ``readout_at_stop`` apply."""
    return support_heads(*shape)[0] != readout_heads(*shape)[0]


def _head_shape(config) -> tuple[int, int, int]:
    """(layers, heads, key/value heads) of a model config."""
    return config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads


def _supervised_layers(
    config, support_weight: float, readout_weight: float, state_weight: float = 0.0
) -> dict[str, int]:
    """The layer of each attention loss in use: ``{"support": 1, "readout": 2, "state": 1}``
    at most."""
    shape = _head_shape(config)
    layers = {name: where(*shape)[0] for name, where in LOSS_HEADS.items()}
    weights = {"support": support_weight, "readout": readout_weight, "state": state_weight}
    return {name: layer for name, layer in layers.items() if weights[name] > 0}


def _supervise(model: LlamaForCausalLM, layers: Collection[int] | None) -> None:
    """Switch to the story-then-questions attention that :func:`_forward` needs, keeping the
    weights of these layers; None: back to plain sdpa."""
    for index, layer in enumerate(model.model.layers):
        layer.self_attn.stmem_supervised = layers is not None and index in layers
    model.set_attn_implementation("sdpa" if layers is None else TRAINING_ATTENTION)


def _training_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """:func:`~stmem_viz.models.question_layout.layout_attention` on a batch that
    :func:`_forward` laid out, keeping the weights in the supervised layers; plain sdpa on any
    other input (validation while training)."""
    kwargs.pop("output_attentions", None)
    layout = getattr(module, "stmem_layout", None)
    if layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    output, weights = layout_attention(
        module,
        query,
        key,
        value,
        layout,
        kwargs["scaling"],
        kwargs.get("dropout", 0.0),
        keep_weights=getattr(module, "stmem_supervised", False),
    )
    module.stmem_weights = weights
    return output, None


AttentionInterface.register(TRAINING_ATTENTION, _training_attention)
AttentionMaskInterface.register(TRAINING_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def support_heads(layers: int, heads: int, kv_heads: int) -> tuple[int, list[int]]:
    """The layer and heads trained to read the supporting facts: the first head of each
    key/value group in the second layer (the first layer, in a one-layer model)."""
    return min(1, layers - 1), list(range(0, heads, heads // kv_heads))


def object_heads(layers: int, heads: int, kv_heads: int) -> tuple[int, list[int]]:
    """The layer and heads trained on the first hop of questions about objects when they are
    kept apart from the actor questions (``objects_apart``): the second head of each key/value
    group, in the layer of :func:`support_heads` (the same heads where groups have one). The
    second hop uses the same heads in the layer of :func:`readout_heads`."""
    layer, first = support_heads(layers, heads, kv_heads)
    return layer, [h + 1 for h in first] if heads // kv_heads > 1 else first


def _object_readout_heads(layers: int, heads: int, kv_heads: int) -> tuple[int, list[int]]:
    return readout_heads(layers, heads, kv_heads)[0], object_heads(layers, heads, kv_heads)[1]


def readout_heads(layers: int, heads: int, kv_heads: int) -> tuple[int, list[int]]:
    """The layer and heads trained to read the fact that names the answer: the same heads as
    :func:`support_heads`, one layer later (the last layer, in a smaller model)."""
    return min(2, layers - 1), support_heads(layers, heads, kv_heads)[1]


LOSS_HEADS = {"support": support_heads, "readout": readout_heads, "state": support_heads}
"""Where each attention loss is applied: a function of (layers, heads, key/value heads). The
state loss trains the support heads from the story's "." tokens; on the second head of each
key/value group instead, it slowed training (task 2: 0.63 against 0.70 after 10 minutes)."""


def _fresh_batch(
    tokenizer, tasks: Sequence[int], longest: int, size: int, per_sentence: int, rng
) -> list[_Packed]:
    """``size`` new question series of the given tasks, each of at most ``longest`` sentences."""
    batch = []
    for _ in range(size):
        task = rng.choice(list(tasks))
        n = rng.randint(MIN_SENTENCES[task], max(longest, MIN_SENTENCES[task]))
        batch.append(_pack(tokenizer, generate_story_series(task, rng, n, per_sentence)))
    return batch


def _training_series(
    tasks, n_stories, seed, lengths, per_sentence, babi_dir, val_n, shares
) -> tuple[list[list[Story]], dict[int, list[Story]]]:
    """Question series to train on, and single-question validation stories per task."""
    if babi_dir is not None:
        series = _group_series(load_babi_training_set(babi_dir, tasks))
        random.Random(seed).shuffle(series)
        held = series[: max(len(series) // 20, 1)]
        val = {t: [g[-1] for g in held if g[-1].question.task == t][:val_n] for t in tasks}
        return series[len(held) :], val
    series = []
    for task in tasks:
        rng = random.Random(f"story-gpt/task{task}/seed{seed}")
        low = max(lengths[0], MIN_SENTENCES[task])
        for _ in range(max(1, round(n_stories * shares.get(task, 1.0)))):
            n = rng.randint(low, lengths[1])
            series.append(generate_story_series(task, rng, n, per_sentence))
    val = {t: generate_stories(t, val_n, seed + 10_000, 2, lengths[1]) for t in tasks}
    return series, val


def train_story_gpt(
    tasks: Sequence[int] = (1, 2, 3),
    n_stories: int = 6000,
    epochs: int = 3,
    seed: int = 0,
    device: str = "auto",
    out: Path | None = None,
    babi_dir: Path | None = None,
    sizes: dict | None = None,
    progress: ProgressFn | None = None,
    *,
    batch_size: int = 16,
    lr: float = 3e-3,
    lm_weight: float = 0.0,
    min_sentences: int = 2,
    max_sentences: int = 20,
    val_n: int = 200,
    evals_per_epoch: int = 4,
    questions_per_sentence: int = 2,
    time_limit_s: float | None = None,
    curriculum: Sequence[tuple[int, Sequence[int], int, int]] = DEFAULT_CURRICULUM,
    curriculum_batch_size: int = 32,
    max_grad_norm: float | None = None,
    support_weight: float = 10.0,
    readout_weight: float = 1.0,
    state_weight: float = 1.0,
    location_weight: float = 1.0,
    task_shares: Mapping[int, float] = DEFAULT_TASK_SHARES,
    objects_apart: bool = False,
    readout_at_stop: bool = True,
    support_at_subject: bool = True,
) -> TrainResult:
    """Train a story-gpt on generated (or real bAbI) stories.

    Args:
        tasks: bAbI tasks to mix in training.
        n_stories: generated training stories per task (ignored with ``babi_dir``). Each is
            asked a question after every sentence that allows one, so a story of n sentences
            gives about n training questions.
        epochs: passes over the training stories.
        seed: seed of the stories, the initial weights and the batch order.
        device: "auto", "cpu", "cuda", "mps" ...
        out: folder to write the model, tokenizer and ``training.json`` to (None: not saved).
        babi_dir: train on the ``qa{task}_*_train.txt`` files in this folder instead.
        sizes: model sizes, see :data:`DEFAULT_SIZES`.
        progress: called at each evaluation point; returning False stops training.
        batch_size: stories (each with all its questions) per optimiser step.
        lr: peak learning rate of AdamW (linear warm-up over 3% of steps, cosine decay).
        lm_weight: weight of the next-token loss on the story tokens (0: answer only).
        min_sentences: shortest generated story.
        max_sentences: longest generated story.
        val_n: validation stories per task (generated with seed ``seed + 10000``).
        evals_per_epoch: validation points per epoch.
        questions_per_sentence: most training questions asked after each sentence.
        time_limit_s: stop after this many seconds (story generation included); the learning
            rate then decays to 0 by the time limit or the last step, whichever comes first.
        curriculum: stages run before the epochs (reported as epoch 0), each
            ``(steps, tasks, max_sentences, questions)``: that many optimiser steps on fresh
            generated stories of those tasks, of at most ``max_sentences`` sentences, with up
            to ``questions`` questions after each sentence (with ``babi_dir``: the training
            stories cut to that length). See :data:`DEFAULT_CURRICULUM`. Tasks not trained are
            left out of a stage.
        curriculum_batch_size: stories per step in the curriculum.
        max_grad_norm: clip the gradient norm to this (None: no clipping).
        support_weight: weight of the first-hop attention loss (0: none): from the "?", the
            supporting sentences that name the question's actor or object, see
            :func:`support_heads`. It needs supporting facts, which generated stories and bAbI
            files both carry.
        readout_weight: weight of the second-hop attention loss, one layer later: from the
            "?", the sentences whose "." tells the answer (see :func:`_readout_facts`,
            :func:`readout_heads`).
        state_weight: weight of the state attention loss: from each sentence's ".", the
            latest earlier sentence in which its actor moved (on the support heads).
        location_weight: weight of the cross-entropy of the place each sentence's actor is in
            after it, predicted at the sentence's "." (the story tokens' next-token output,
            unused otherwise; it conflicts with ``lm_weight`` > 0 there).
        task_shares: generated training stories of each task as a multiple of ``n_stories``
            (ignored with ``babi_dir``), see :data:`DEFAULT_TASK_SHARES`.
        objects_apart: train both hops of questions about objects on their own heads (the
            heads of :func:`object_heads` in the support and readout layers), not on the heads
            that answer questions about actors.
        readout_at_stop: train the second hop on the final "." of the sentences that tell the
            answer (where the location loss puts their actor's place), not on all their tokens.
        support_at_subject: train the first hop on the question's subject word in its
            supporting sentences ("milk" in "John took the milk"), not on all their tokens.
            On whole sentences, heads can gain most of the loss by reading every sentence about
            any object, which fails in long stories. Both options apply only where the hops
            are on different layers (models of three layers or more); in smaller models both
            hops train the same heads on whole sentences.

    Returns:
        The trained model (in eval mode), its history and the output folder.
    """
    arguments = {
        "tasks": list(tasks),
        "n_stories": n_stories,
        "epochs": epochs,
        "seed": seed,
        "device": device,
        "out": str(out) if out is not None else None,
        "babi_dir": str(babi_dir) if babi_dir is not None else None,
        "sizes": dict(sizes or {}),
        "batch_size": batch_size,
        "lr": lr,
        "lm_weight": lm_weight,
        "min_sentences": min_sentences,
        "max_sentences": max_sentences,
        "val_n": val_n,
        "evals_per_epoch": evals_per_epoch,
        "questions_per_sentence": questions_per_sentence,
        "time_limit_s": time_limit_s,
        "curriculum": [[steps, list(ts), n, q] for steps, ts, n, q in curriculum],
        "curriculum_batch_size": curriculum_batch_size,
        "max_grad_norm": max_grad_norm,
        "support_weight": support_weight,
        "readout_weight": readout_weight,
        "state_weight": state_weight,
        "location_weight": location_weight,
        "task_shares": {str(t): share for t, share in task_shares.items()},
        "objects_apart": objects_apart,
        "readout_at_stop": readout_at_stop,
        "support_at_subject": support_at_subject,
    }
    if epochs < 1 or n_stories < 1 or batch_size < 1:
        raise StmemError("epochs, n_stories and batch_size must each be at least 1.")
    started = time.perf_counter()
    torch_device = resolve_device(device)
    torch.manual_seed(seed)
    model, tokenizer = build_story_gpt(sizes)
    model.to(torch_device).train()
    supervised = _supervised_layers(model.config, support_weight, readout_weight, state_weight)
    _supervise(model, set(supervised.values()))

    train, val = _training_series(
        tasks,
        n_stories,
        seed,
        (min_sentences, max_sentences),
        questions_per_sentence,
        babi_dir,
        val_n,
        dict(task_shares),
    )
    packed = [_pack(tokenizer, series) for series in train]
    stages = []
    for steps, stage_tasks, longest, questions in curriculum:
        stage_tasks = [t for t in stage_tasks if t in tasks]
        if steps > 0 and stage_tasks:
            stages.append((steps, stage_tasks, longest, questions))
    rng = random.Random(seed)
    steps_per_epoch = math.ceil(len(packed) / batch_size)
    total_steps = sum(stage[0] for stage in stages) + steps_per_epoch * epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = min(50, total_steps)
    deadline = started + time_limit_s if time_limit_s else None

    def set_lr(step: int) -> None:
        """Linear warm-up, then cosine decay to 0 at the last step or at the time limit."""
        done = step / total_steps
        if deadline is not None:
            done = max(done, (time.perf_counter() - started) / time_limit_s)
        factor = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
        for group in optimizer.param_groups:
            group["lr"] = lr * factor

    def schedule():
        """(epoch, batch) pairs: curriculum batches first (epoch 0), then the epochs."""
        for steps, stage_tasks, longest, questions in stages:
            if babi_dir is None:
                size = curriculum_batch_size
                for _ in range(steps):
                    yield 0, _fresh_batch(tokenizer, stage_tasks, longest, size, questions, rng)
                continue
            chosen = [series for series in train if series[0].question.task in stage_tasks]
            stories = [_pack(tokenizer, series) for series in _cut_series(chosen, longest)]
            given = 0
            while stories and given < steps:
                for batch in _batches(stories, curriculum_batch_size, rng)[: steps - given]:
                    given += 1
                    yield 0, batch
        for epoch in range(1, epochs + 1):
            for batch in _batches(packed, batch_size, rng):
                yield epoch, batch

    eval_every = max(1, steps_per_epoch // max(1, evals_per_epoch))
    n_questions = sum(len(p.answers) for p in packed)
    log.info("story-gpt: %d stories, %d questions, %d steps", len(packed), n_questions, total_steps)

    history: list[TrainProgress] = []
    stopped, out_of_time, step, running = False, False, 0, []
    for epoch, batch in schedule():
        set_lr(step)
        inputs = _collate(batch, tokenizer.pad_token_id, torch_device)
        loss = _loss(
            model,
            inputs,
            lm_weight,
            support_weight,
            readout_weight,
            state_weight,
            location_weight,
            objects_apart,
            readout_at_stop,
            support_at_subject,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        step += 1
        running.append(loss.item())
        out_of_time = deadline is not None and time.perf_counter() >= deadline
        if step % eval_every == 0 or step == total_steps or out_of_time:
            report = _report(model, tokenizer, val, epoch, step, total_steps, running, started)
            history.append(report)
            running = []
            stopped = progress is not None and progress(report) is False
        if stopped or out_of_time:
            break

    model.eval()
    _supervise(model, None)
    final = {t: _accuracy(model, tokenizer, stories) for t, stories in val.items()}
    wall_s = time.perf_counter() - started
    if out is not None:
        record = {
            "model_sizes": {**DEFAULT_SIZES, **(sizes or {})},
            "stopped_early": stopped,
            "stopped_by_time_limit": out_of_time,
            "steps": step,
        }
        _save(model, tokenizer, Path(out), arguments, history, final, wall_s, record)
    return TrainResult(
        model=model, history=history, out=Path(out) if out else None, stopped_early=stopped
    )


def _report(model, tokenizer, val, epoch, step, total_steps, running, started) -> TrainProgress:
    accuracies = [_accuracy(model, tokenizer, stories) for stories in val.values()]
    model.train()
    report = TrainProgress(
        epoch=epoch,
        step=step,
        total_steps=total_steps,
        loss=float(np.mean(running)) if running else float("nan"),
        val_accuracy=float(np.mean(accuracies)) if accuracies else None,
        elapsed_s=time.perf_counter() - started,
    )
    log.info(
        "step %d/%d loss %.4f val accuracy %s",
        step,
        total_steps,
        report.loss,
        dict(zip(val, np.round(accuracies, 3), strict=True)),
    )
    return report


def _save(model, tokenizer, out: Path, arguments, history, final, wall_s, record) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    record = {
        "trainer": "stmem_viz.models.story_gpt.train_story_gpt",
        "arguments": arguments,
        "wall_time_s": round(wall_s, 1),
        **record,
        "final_val_accuracy": {str(t): a for t, a in final.items()},
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "history": [asdict(h) for h in history],
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")


def trained_readers(folder: str | Path) -> list[str]:
    """What the attention-supervised heads of a saved story-gpt were trained to read.

    Args:
        folder: a folder written by :func:`train_story_gpt`.

    Returns:
        One sentence per attention loss, e.g. "Layer 1, heads 0 and 2: ..."; empty when the
        folder has no ``training.json`` or was trained without attention losses.
    """
    try:
        record = json.loads((Path(folder) / "training.json").read_text())
        arguments, sizes = record["arguments"], record["model_sizes"]
        shape = (
            sizes["num_hidden_layers"],
            sizes["num_attention_heads"],
            sizes["num_key_value_heads"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return []
    apart = bool(arguments.get("objects_apart"))
    narrow = _narrow_hops(shape)

    def first_hop(subject: str) -> str:
        if arguments.get("support_at_subject") and narrow:
            return f"from the question's '?' to the name of its {subject} in its supporting facts"
        return f"from the question's '?' to its supporting sentences that name its {subject}"

    second_hop = "from the question's '?' to the sentences that tell its answer"
    if arguments.get("readout_at_stop") and narrow:
        second_hop = (
            "from the question's '?' to the final '.' of the sentences that tell its answer"
        )
    readers = [
        ("support_weight", support_heads, first_hop("actor" if apart else "actor or object")),
        ("readout_weight", readout_heads, second_hop + (", for questions about actors" * apart)),
        (
            "state_weight",
            support_heads,
            "from each sentence's '.' to the latest earlier sentence in which its actor moved",
        ),
    ]
    if apart:
        readers[1:1] = [
            ("support_weight", object_heads, first_hop("object")),
            ("readout_weight", _object_readout_heads, second_hop + ", for questions about objects"),
        ]
    lines = []
    for weight, where, what in readers:
        if (arguments.get(weight) or 0) > 0:
            layer, heads = where(*shape)
            named = " and ".join(str(h) for h in heads)
            lines.append(
                f"Layer {layer}, head{'s' if len(heads) > 1 else ''} {named}: trained to attend "
                f"{what}."
            )
    return lines
