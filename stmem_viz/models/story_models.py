"""Memory networks behind one interface: load, save, batch, answer and trace.

:class:`StoryModel` wraps either a Recurrent Entity Network (Henaff et al., 2017,
:mod:`stmem_viz.models.entnet`) or an end-to-end memory network (Sukhbaatar et al., 2015,
:mod:`stmem_viz.models.memn2n`) together with its vocabulary. A saved model is a folder with
``config.json`` (whose ``"stmem_family"`` is ``"entnet"`` or ``"memn2n"``),
``model.safetensors``, ``vocab.json`` and ``training.json``. Weights are read with safetensors
only, never with pickle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from stmem_viz import StmemError
from stmem_viz.data import Vocabulary, encode_story
from stmem_viz.models.bundled import bundled_path, is_bundled_spec
from stmem_viz.models.device import resolve_device
from stmem_viz.models.entnet import EntNet, EntNetTrace
from stmem_viz.models.memn2n import MemN2N, MemN2NTrace

log = logging.getLogger(__name__)

FAMILIES = ("entnet", "memn2n")
DEFAULT_SIZES: dict[str, dict[str, int]] = {
    "entnet": {"dim": 100, "slots": 20, "max_words": 24},
    "memn2n": {"dim": 50, "hops": 3, "memory_size": 50},
}
"""Sizes a network gets when none are given: ``entnet`` takes ``dim`` (slot and embedding
size), ``slots`` (number of memory slots) and ``max_words`` (longest sentence it can read);
``memn2n`` takes ``dim`` (embedding size), ``hops`` and ``memory_size`` (sentences kept)."""

ABLATIONS = {"entnet": "silence_slots", "memn2n": "drop_sentences"}
_SIZE_ATTRIBUTES = {
    "dim": "dim",
    "slots": "n_slots",
    "max_words": "max_words",
    "hops": "hops",
    "memory_size": "memory_size",
}


def build_network(family: str, vocab_size: int, sizes: dict[str, int] | None = None):
    """A freshly initialised network of one family.

    Args:
        family: "entnet" or "memn2n".
        vocab_size: number of words in the vocabulary.
        sizes: overrides of :data:`DEFAULT_SIZES` for that family.

    Raises:
        StmemError: unknown family or size name.
    """
    if family not in FAMILIES:
        raise StmemError(f"Unknown memory-network family '{family}'; choose one of {FAMILIES}.")
    unknown = set(sizes or {}) - set(DEFAULT_SIZES[family])
    if unknown:
        raise StmemError(
            f"Unknown size(s) {sorted(unknown)} for {family}; "
            f"known sizes are {sorted(DEFAULT_SIZES[family])}."
        )
    merged = {**DEFAULT_SIZES[family], **(sizes or {})}
    if family == "entnet":
        return EntNet(vocab_size, **merged)
    return MemN2N(vocab_size, **merged)


@dataclass
class Batch:
    """Padded word ids of several stories.

    Attributes:
        sentences: ``[B, S, W]`` int64, stories right-padded with all-zero sentences.
        question: ``[B, W']`` int64, padded with 0.
    """

    sentences: torch.Tensor
    question: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(self.sentences.to(device), self.question.to(device))


def collate(stories: Sequence[tuple[np.ndarray, np.ndarray]]) -> Batch:
    """Pad encoded stories into one batch.

    Args:
        stories: pairs of ``sentences [S_i, W_i]`` and ``question [W'_i]`` word ids.

    Returns:
        A :class:`Batch` with ``S = max S_i``, ``W = max W_i`` and ``W' = max W'_i``.
    """
    n = len(stories)
    s_max = max(max(s.shape[0] for s, _ in stories), 1)
    w_max = max(max(s.shape[1] if s.size else 1 for s, _ in stories), 1)
    q_max = max(max(q.shape[0] for _, q in stories), 1)
    sentences = np.zeros((n, s_max, w_max), dtype=np.int64)
    question = np.zeros((n, q_max), dtype=np.int64)
    for i, (s, q) in enumerate(stories):
        sentences[i, : s.shape[0], : s.shape[1]] = s
        question[i, : q.shape[0]] = q
    return Batch(torch.from_numpy(sentences), torch.from_numpy(question))


@dataclass
class StoryModel:
    """A trained memory network with its vocabulary, ready to answer questions about stories.

    Attributes:
        network: the :class:`EntNet` or :class:`MemN2N`.
        vocab: the vocabulary its word ids refer to.
        config: the contents of ``config.json``.
        name: a display name (the folder or bundled name).
        device: where the network runs.
    """

    network: EntNet | MemN2N
    vocab: Vocabulary
    config: dict[str, Any]
    name: str
    device: torch.device

    @property
    def family(self) -> str:
        """ "entnet" or "memn2n"."""
        return self.config["stmem_family"]

    @property
    def max_sentences(self) -> int | None:
        """How many of the latest sentences the network can hold (None: no limit)."""
        return self.network.memory_size if isinstance(self.network, MemN2N) else None

    def encode(
        self, sentences: Sequence[str], question: str, keep_all: bool = False
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Check and encode one story.

        Args:
            sentences: the story, one sentence per item.
            question: the question asked after it.
            keep_all: keep every sentence even past a MemN2N's memory size.

        Returns:
            ``sentences [S, W]`` and ``question [W']`` word ids, and the unknown words.

        Raises:
            StmemError: no sentences, no question, or a sentence too long for an EntNet.
        """
        if isinstance(sentences, str):
            raise StmemError(
                "Pass the story as a list of sentences, not one string "
                "(stmem_viz.data.parse_story_text splits free text)."
            )
        sentences = [s.strip() for s in sentences if s and s.strip()]
        if not sentences:
            raise StmemError("The story is empty; write at least one sentence before the question.")
        if not question or not question.strip():
            raise StmemError(
                "There is no question; end the story with a question such as 'Where is Mary?'."
            )
        limit = None if keep_all else self.max_sentences
        encoded = encode_story(sentences, question.strip(), self.vocab, max_sentences=limit)
        ids = np.asarray(encoded.sentences, dtype=np.int64)
        q_ids = np.asarray(encoded.question, dtype=np.int64)
        ids = ids[:, : max(int((ids != 0).sum(-1).max()), 1)]  # drop padding-only columns
        q_ids = q_ids[: max(int((q_ids != 0).sum()), 1)]
        if isinstance(self.network, EntNet):
            width = max(ids.shape[1], q_ids.shape[0])
            if width > self.network.max_words:
                raise StmemError(
                    f"A sentence or the question has {width} words; this EntNet reads at most "
                    f"{self.network.max_words}. Split long sentences into shorter ones."
                )
        return ids, q_ids, list(encoded.unknown_words)

    @torch.no_grad()
    def answer_probs(
        self, stories: Sequence[tuple[Sequence[str], str]], batch_size: int = 128
    ) -> np.ndarray:
        """Probability of every vocabulary word as the answer, for many stories.

        Args:
            stories: ``(sentences, question)`` pairs.
            batch_size: stories run together.

        Returns:
            ``[n, V]`` float32 probabilities, ``V = len(vocab)``.

        Raises:
            StmemError: a story is empty or has no question.
        """
        encoded = [self.encode(s, q)[:2] for s, q in stories]
        self.network.eval()
        out = np.zeros((len(encoded), len(self.vocab)), dtype=np.float32)
        for start in range(0, len(encoded), batch_size):
            batch = collate(encoded[start : start + batch_size]).to(self.device)
            logits = self.network(batch.sentences, batch.question)
            if isinstance(logits, tuple):
                logits = logits[0]
            out[start : start + len(batch.question)] = torch.softmax(logits, -1).cpu().numpy()
        return out

    def answer(self, sentences: Sequence[str], question: str) -> str:
        """The most probable answer word for one story."""
        probs = self.answer_probs([(sentences, question)])[0]
        return self.vocab.decode([int(probs.argmax())])[0]

    @torch.no_grad()
    def answer_after_each_sentence(self, sentences: Sequence[str], question: str) -> np.ndarray:
        """Answer probabilities with the question asked after every prefix of the story.

        Returns:
            ``[S, V]``; row ``t`` answers after sentences ``0..t``.
        """
        ids, q_ids, _ = self.encode(sentences, question, keep_all=True)
        self.network.eval()
        s, q = torch.from_numpy(ids).to(self.device), torch.from_numpy(q_ids).to(self.device)
        if isinstance(self.network, EntNet):
            return self.network.answer_after_each_sentence(s, q).cpu().numpy()
        n = s.shape[0]
        prefixes = s.unsqueeze(0).repeat(n, 1, 1)  # (S, S, W): prefix t keeps rows 0..t
        keep = (
            torch.arange(n, device=self.device)[None, :]
            <= torch.arange(n, device=self.device)[:, None]
        )
        prefixes = prefixes * keep[:, :, None]
        logits, _ = self.network(prefixes, q.unsqueeze(0).expand(n, -1))
        return torch.softmax(logits, -1).cpu().numpy()

    def trace(
        self, sentences: Sequence[str], question: str, **ablation: Sequence[int]
    ) -> EntNetTrace | MemN2NTrace:
        """Run one story and record what the network did.

        Args:
            sentences: the story, one sentence per item.
            question: the question.
            **ablation: ``silence_slots=[...]`` for an EntNet (those slots are left out of the
                read; see :meth:`EntNet.trace`) or ``drop_sentences=[...]`` (0-based) for a
                MemN2N (those sentences are removed from memory).

        Returns:
            An :class:`EntNetTrace` or :class:`MemN2NTrace`, with the sentences, question and
            the words the vocabulary did not know (they were read as ``<unk>``).

        Raises:
            StmemError: bad story, unknown ablation name, or an index out of range.
        """
        allowed = ABLATIONS[self.family]
        extra = set(ablation) - {allowed}
        if extra:
            raise StmemError(
                f"{self.family} models take the ablation '{allowed}' only; got {sorted(extra)}."
            )
        ids, q_ids, unknown = self.encode(sentences, question, keep_all=True)
        chosen = [int(i) for i in ablation.get(allowed, ())]
        bound = self.network.n_slots if self.family == "entnet" else ids.shape[0]
        bad = [i for i in chosen if not 0 <= i < bound]
        if bad:
            what = "slots" if self.family == "entnet" else "sentences"
            raise StmemError(f"{allowed} names {bad}, but the model has {bound} {what} (0-based).")
        if unknown:
            log.info("unknown words read as <unk>: %s", unknown)

        self.network.eval()
        s, q = torch.from_numpy(ids).to(self.device), torch.from_numpy(q_ids).to(self.device)
        result = self.network.trace(s, q, chosen)
        clean = [t.strip() for t in sentences if t and t.strip()]
        return replace(result, sentences=clean, question=question.strip(), unknown_words=unknown)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise StmemError(f"{path.parent} has no {path.name}; {what}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StmemError(f"{path} is not valid JSON ({error}); {what}") from error


def load_story_model(spec_or_path: str | Path, device: str = "auto") -> StoryModel:
    """Load a memory network from ``bundled:NAME`` or from a folder.

    Args:
        spec_or_path: ``"bundled:story-entnet"``, ``"bundled:story-memn2n"``, or a folder with
            ``config.json``, ``model.safetensors`` and ``vocab.json``.
        device: "auto", "cpu", "cuda", "mps", ...

    Returns:
        The model, in eval mode, on the device.

    Raises:
        StmemError: the folder or a file is missing, unreadable or corrupt, or it is not a
            memory network.
    """
    if isinstance(spec_or_path, str) and is_bundled_spec(spec_or_path):
        folder = bundled_path(spec_or_path)
    else:
        folder = Path(spec_or_path).expanduser()
    if not folder.is_dir():
        raise StmemError(f"There is no model folder at {folder}; check the path.")
    hint = "a memory-network folder holds config.json, model.safetensors and vocab.json."
    config = _read_json(folder / "config.json", hint)
    family = config.get("stmem_family")
    if family not in FAMILIES:
        raise StmemError(
            f'{folder} is not a memory network: its config.json needs "stmem_family" set to '
            f"one of {list(FAMILIES)}."
        )

    # vocabulary
    vocab_path = folder / "vocab.json"
    if not vocab_path.is_file():
        raise StmemError(f"{folder} has no vocab.json; {hint}")
    try:
        vocab = Vocabulary.load(vocab_path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StmemError(
            f"{vocab_path} could not be read ({error}); save the model again."
        ) from error

    # weights
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise StmemError(f"{folder} has no model.safetensors; {hint}")
    try:
        state = load_file(str(weights))
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise StmemError(
            f"{weights} is not a readable safetensors file ({error}); train or copy it again."
        ) from error
    sizes = {k: int(config[k]) for k in DEFAULT_SIZES[family] if k in config}
    network = build_network(family, int(config.get("vocab_size", len(vocab))), sizes)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise StmemError(
            f"The weights in {weights} do not match its config.json ({error}); "
            "save config and weights together."
        ) from error
    if network.vocab_size != len(vocab):
        raise StmemError(
            f"{folder}: the network has {network.vocab_size} output words but vocab.json has "
            f"{len(vocab)}; save the model and its vocabulary together."
        )

    target = resolve_device(device)
    network.to(target).eval()
    name = config.get("name") or folder.name
    return StoryModel(network=network, vocab=vocab, config=config, name=name, device=target)


def save_story_model(
    model: StoryModel, out: str | Path, training_args: dict[str, Any] | None = None
) -> Path:
    """Write a model folder that :func:`load_story_model` reads back.

    Args:
        model: the model to save.
        out: the folder (created if needed; existing files of the same names are replaced).
        training_args: what produced the weights, written to ``training.json``.

    Returns:
        The folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    network = model.network
    sizes = {k: int(getattr(network, _SIZE_ATTRIBUTES[k])) for k in DEFAULT_SIZES[model.family]}
    config = {
        "stmem_family": model.family,
        "name": model.name,
        "vocab_size": network.vocab_size,
        **sizes,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    model.vocab.save(out / "vocab.json")
    (out / "training.json").write_text(json.dumps(training_args or {}, indent=2) + "\n")
    return out
