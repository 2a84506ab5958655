"""What a memory network wrote, kept and lost while reading one story.

The Memory page, the ``stmem-viz trace`` command and notebooks share these functions:

- reading a story from the generator, from typed text or from a file (bAbI format, Weston et al.,
  2015, or one sentence per line ending with a question);
- which slot of a Recurrent Entity Network (Henaff et al., 2017) tracks which entity: the cosine
  similarity of each slot state to the network's own encoding of each entity word;
- recall over time: the probability of the right answer had the question been asked after each
  sentence;
- the effect of an ablation (a silenced EntNet slot, a MemN2N sentence removed from memory) on
  the answer;
- a trace as a dictionary of named arrays, the layout of the ``.npz`` files the app and the CLI
  write.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stmem_viz import StmemError
from stmem_viz.data import (
    ACTORS,
    LOCATIONS,
    OBJECTS,
    TASKS,
    Vocabulary,
    generate_story,
    parse_story_text,
    read_babi,
    tokenize,
)
from stmem_viz.models.entnet import EntNetTrace
from stmem_viz.models.memn2n import MemN2NTrace
from stmem_viz.models.story_models import StoryModel

ENTITY_KINDS: dict[str, tuple[str, ...]] = {
    "actor": tuple(a.lower() for a in ACTORS),
    "location": LOCATIONS,
    "object": OBJECTS,
}
"""The words of the story world a slot can track, by kind (lower case, as the vocabulary has
them)."""

QUESTION_WORDS = frozenset(
    {"where", "is", "was", "the", "before", "after", "who", "what", "a", "an", "in", "did", "does"}
)
"""Words of a question that name no entity; any other word must appear in the story."""

_BABI_LINE = re.compile(r"^\s*\d+\s+")


@dataclass(frozen=True)
class StoryInput:
    """One story ready for a memory network, with what is known about its answer.

    Attributes:
        sentences: the sentences, oldest first.
        question: the question asked after them.
        answer: the expected answer word (generated or bAbI stories), or None when unknown.
        support: 1-based indexes into ``sentences`` of the supporting facts (may be empty).
        task: the bAbI task number, 0 when unknown.
    """

    sentences: tuple[str, ...]
    question: str
    answer: str | None = None
    support: tuple[int, ...] = ()
    task: int = 0

    @property
    def label(self) -> str:
        """A one-line description, e.g. for a story picker."""
        first = self.sentences[0] if self.sentences else ""
        return f"{len(self.sentences)} sentences: {first} … {self.question}"


def generated_story(task: int, n_sentences: int, seed: int) -> StoryInput:
    """A story from the built-in generator; the same arguments give the same story.

    Raises:
        StmemError: unknown task or too few sentences for it.
    """
    if task not in TASKS:
        raise StmemError(f"Task {task} is not generated here; choose one of {list(TASKS)}.")
    story = generate_story(task, random.Random(seed), n_sentences=n_sentences)
    q = story.question
    return StoryInput(story.sentences, q.text, q.answer, tuple(q.support), q.task)


def stories_from_text(text: str) -> list[StoryInput]:
    """Every story of a text: bAbI format (with answers and supporting facts) or plain text.

    Text whose lines all start with an id is read as bAbI; one story is returned per question
    line. If its question lines lack the ``<TAB>answer<TAB>ids`` fields, it is read like typed
    text (the last question, no answer). Any other text holds sentences ending with one
    question.

    Raises:
        StmemError: the text is empty, has no question, or is malformed bAbI.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and all(_BABI_LINE.match(line) for line in lines) and any("\t" in x for x in lines):
        stories = read_babi("\n".join(lines) + "\n")
        if not stories:
            raise StmemError("The bAbI text has no question line ('ID question<TAB>answer').")
        return [
            StoryInput(
                s.sentences, s.question.text, s.question.answer, s.question.support, s.question.task
            )
            for s in stories
        ]
    sentences, question = parse_story_text(text)
    if not sentences:
        raise StmemError(
            "The story has a question but no sentences before it; write at least one sentence."
        )
    return [StoryInput(tuple(sentences), question)]


def stories_from_bytes(data: bytes, name: str = "the file") -> list[StoryInput]:
    """Every story of an uploaded file (UTF-8 text, see :func:`stories_from_text`).

    Raises:
        StmemError: the file is not UTF-8 text, or holds no readable story.
    """
    if b"\x00" in data:
        raise StmemError(f"{name} is not a text file; upload a bAbI .txt file or plain text.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise StmemError(
            f"{name} is not UTF-8 text; upload a bAbI .txt file or plain text."
        ) from None
    try:
        return stories_from_text(text)
    except StmemError as error:
        raise StmemError(f"{name}: {error}") from None


def load_story_file(path: str | Path, index: int | None = None) -> StoryInput:
    """One story of a file: the first one, or the one at ``index`` (0-based).

    Raises:
        StmemError: the file is missing or unreadable, holds no story, or has no such index.
    """
    path = Path(path)
    if not path.is_file():
        raise StmemError(f"The story file {path} does not exist.")
    stories = stories_from_bytes(path.read_bytes(), str(path))
    chosen = 0 if index is None else index
    if not 0 <= chosen < len(stories):
        raise StmemError(
            f"{path} holds {len(stories)} stories; choose an index from 0 to {len(stories) - 1}."
        )
    return stories[chosen]


def unmentioned_words(sentences: Sequence[str], question: str) -> list[str]:
    """Words the question asks about that no sentence mentions.

    Question words (:data:`QUESTION_WORDS`) and punctuation are ignored; "Where is Bob?" after a
    story about Mary gives ``["bob"]``.
    """
    seen = {token for sentence in sentences for token in tokenize(sentence)}
    asked = [t for t in tokenize(question) if t.isalnum() and t not in QUESTION_WORDS]
    return list(dict.fromkeys(t for t in asked if t not in seen))


def entity_words(vocab: Vocabulary) -> dict[str, list[str]]:
    """The entity words of :data:`ENTITY_KINDS` that the vocabulary holds, by kind."""
    known = set(vocab.words)
    return {kind: [w for w in words if w in known] for kind, words in ENTITY_KINDS.items()}


@torch.no_grad()
def word_vectors(model: StoryModel, words: Sequence[str]) -> np.ndarray:
    """The EntNet's own encoding of each word read as a one-word sentence.

    The story encoder turns a sentence into ``s = sum_i f_i * e_i`` (embedding ``e_i`` times the
    position mask ``f_i``); a one-word sentence gives ``f_1 * e``. This is the vector that word
    adds to a sentence in first position, so it lives in the same space as the gates' dot
    products ``s . h_j``.

    Args:
        model: an EntNet story model.
        words: words of its vocabulary.

    Returns:
        ``[E, D]`` float32, one row per word.

    Raises:
        StmemError: the model is not an EntNet, or a word is not in its vocabulary.
    """
    if model.family != "entnet":
        raise StmemError(
            f"Slot/entity similarity needs an EntNet; {model.name} is a {model.family}."
        )
    missing = model.vocab.unknown(list(words))
    if missing:
        raise StmemError(f"{missing} are not in the vocabulary of {model.name}.")
    ids = torch.tensor([[model.vocab.id(w)] for w in words], dtype=torch.long, device=model.device)
    return model.network.encode_story(ids.unsqueeze(0))[0].cpu().numpy()  # (E, D)


def cosine_similarity(slots: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of every slot to every vector.

    Args:
        slots: ``[..., N, D]`` slot states.
        vectors: ``[E, D]`` entity vectors.

    Returns:
        ``[..., N, E]`` in [-1, 1]; 0 where a slot or a vector has zero length.
    """
    slots = np.asarray(slots, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float64)
    slot_norm = np.linalg.norm(slots, axis=-1, keepdims=True)
    vec_norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    a = np.divide(slots, slot_norm, out=np.zeros_like(slots), where=slot_norm > 0)
    b = np.divide(vectors, vec_norm, out=np.zeros_like(vectors), where=vec_norm > 0)
    return (a @ b.T).astype(np.float32)


def slot_entity_similarity(
    model: StoryModel, trace: EntNetTrace, words: Sequence[str]
) -> np.ndarray:
    """Cosine similarity of each slot, after each sentence, to each entity word.

    Args:
        model: the EntNet story model the trace came from.
        trace: its trace of one story (``S`` sentences, ``N`` slots).
        words: ``E`` entity words (see :func:`entity_words`).

    Returns:
        ``[S, N, E]`` float32.
    """
    return cosine_similarity(trace.slots_after, word_vectors(model, words))


def target_answer(
    story: StoryInput, final_probs: np.ndarray, vocab: Vocabulary
) -> tuple[int, str, str]:
    """The answer whose probability recall and ablation follow.

    The story's own answer when it has one the vocabulary knows; otherwise the model's final
    (most probable) answer.

    Args:
        story: the story.
        final_probs: ``[V]`` the model's answer distribution after the whole story.
        vocab: the model's vocabulary.

    Returns:
        The word id, the word, and where it came from ("story answer" or "model's answer").
    """
    if story.answer is not None:
        word = story.answer.strip().lower()
        if word in vocab.words:
            return vocab.id(word), word, "story answer"
    best = int(np.argmax(final_probs))
    return best, vocab.words[best], "model's answer"


def recall_over_time(
    model: StoryModel, trace: EntNetTrace | MemN2NTrace, answer_id: int
) -> np.ndarray:
    """Probability of one answer if the question were asked after each sentence.

    An EntNet trace already holds the answers after every prefix; a MemN2N is run once per
    prefix (a MemN2N prefix longer than its memory keeps only the latest sentences).

    Args:
        model: the model the trace came from.
        trace: its trace of the story (``S`` sentences), without ablation.
        answer_id: the vocabulary id of the answer to follow.

    Returns:
        ``[S]`` float32; entry ``t`` answers after sentences ``0..t``.
    """
    if isinstance(trace, EntNetTrace):
        by_prefix = trace.answers_by_prefix
    else:
        by_prefix = model.answer_after_each_sentence(trace.sentences, trace.question)
    return np.asarray(by_prefix[:, answer_id], dtype=np.float32)


@dataclass(frozen=True)
class AblationEffect:
    """How removing part of the memory changed the answer.

    Attributes:
        answer: the followed answer word.
        before: its probability without the ablation.
        after: its probability with it.
        top_before: the most probable answer without the ablation.
        top_after: the most probable answer with it.
    """

    answer: str
    before: float
    after: float
    top_before: str
    top_after: str

    @property
    def change(self) -> float:
        """``after - before``."""
        return self.after - self.before

    def sentence(self, what: str) -> str:
        """The effect in words, e.g. "Slot 3 silenced: P(kitchen) falls from 0.910 to 0.200"."""
        change = round(self.change, 3)
        verb = "rises" if change > 0 else "falls"
        if change == 0:
            text = f"{what}: P({self.answer}) stays at {self.after:.3f} ({self.change:+.4f})."
        else:
            text = f"{what}: P({self.answer}) {verb} from {self.before:.3f} to {self.after:.3f} "
            text += f"({self.change:+.3f})."
        if self.top_after != self.top_before:
            text += f" The top answer changes from '{self.top_before}' to '{self.top_after}'."
        else:
            text += f" The top answer stays '{self.top_before}'."
        return text


def ablation_effect(
    before: np.ndarray, after: np.ndarray, answer_id: int, vocab: Vocabulary
) -> AblationEffect:
    """Compare two ``[V]`` answer distributions at one answer."""
    return AblationEffect(
        answer=vocab.words[answer_id],
        before=float(before[answer_id]),
        after=float(after[answer_id]),
        top_before=vocab.words[int(np.argmax(before))],
        top_after=vocab.words[int(np.argmax(after))],
    )


def trace_arrays(trace: EntNetTrace | MemN2NTrace, vocab: Vocabulary) -> dict[str, np.ndarray]:
    """A trace as named arrays, the layout of the exported ``.npz`` files.

    EntNet: ``sentences`` [S] str, ``question`` str, ``slots_before`` and ``slots_after``
    [S, N, D], ``gates`` [S, N], ``candidates`` [S, N, D], ``read_attention`` [N],
    ``answer_probs`` [V], ``vocabulary`` [V] str.
    MemN2N: ``sentences``, ``question``, ``hop_attention`` [K, S], ``answer_probs`` [V],
    ``vocabulary``.
    """
    arrays: dict[str, np.ndarray] = {
        "sentences": np.asarray(list(trace.sentences), dtype=str),
        "question": np.asarray(trace.question, dtype=str),
    }
    if isinstance(trace, EntNetTrace):
        for name in ("slots_before", "slots_after", "gates", "candidates", "read_attention"):
            arrays[name] = np.asarray(getattr(trace, name), dtype=np.float32)
    else:
        arrays["hop_attention"] = np.asarray(trace.hop_attention, dtype=np.float32)
    arrays["answer_probs"] = np.asarray(trace.answer_probs, dtype=np.float32)
    arrays["vocabulary"] = np.asarray(vocab.words, dtype=str)
    return arrays
