"""One word-level vocabulary shared by every bundled model.

The vocabulary holds every word the story world of bAbI tasks 1-3 (Weston et al., 2015) can
produce, so the memory networks and the small Transformer index the same words with the same
ids. Words outside it are encoded as ``<unk>`` and always reported back to the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stmem_viz import StmemError
from stmem_viz.data.world import (
    ACTORS,
    DROP_VERBS,
    GET_VERBS,
    LOCATIONS,
    MOVE_VERBS,
    OBJECTS,
)

PAD, UNK = "<pad>", "<unk>"
BOS, EOS = "<bos>", "<eos>"
SPECIALS: tuple[str, ...] = (PAD, UNK, BOS, EOS)
PUNCTUATION = ".?,!"

_PUNCT_SPLIT = re.compile(f"([{re.escape(PUNCTUATION)}])")


def tokenize(text: str) -> list[str]:
    """Split text into lower-case words, with ``. ? , !`` as tokens of their own.

    Words are separated by whitespace; any other character stays inside its word.

    >>> tokenize("Where is Mary?")
    ['where', 'is', 'mary', '?']
    """
    tokens: list[str] = []
    for chunk in text.lower().split():
        tokens.extend(part for part in _PUNCT_SPLIT.split(chunk) if part)
    return tokens


class Vocabulary:
    """Words and their ids; ``<pad>`` is id 0 and ``<unk>`` id 1.

    Args:
        words: the words in id order; must start with ``<pad>``, ``<unk>`` and hold no duplicate.

    Raises:
        StmemError: the word list does not start with the two special words, or repeats one.
    """

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if words[:2] != [PAD, UNK]:
            raise StmemError(f"A vocabulary must start with '{PAD}' and '{UNK}' (ids 0 and 1).")
        if len(set(words)) != len(words):
            raise StmemError("A vocabulary must not list a word twice.")
        self.words = words
        self._ids = {w: i for i, w in enumerate(words)}

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.words == self.words

    def __hash__(self) -> int:
        return hash(tuple(self.words))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words)"

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def id(self, word: str) -> int:
        """The id of ``word``, or the ``<unk>`` id if it is not in the vocabulary."""
        return self._ids.get(word, self.unk_id)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Ids of ``tokens``; unknown ones become ``<unk>`` (see :meth:`unknown`)."""
        return [self.id(t) for t in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Words of ``ids``.

        Raises:
            StmemError: an id is outside the vocabulary.
        """
        words = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.words):
                raise StmemError(f"Id {i} is outside the vocabulary of {len(self)} words.")
            words.append(self.words[i])
        return words

    def unknown(self, tokens: Sequence[str]) -> list[str]:
        """The tokens that are not in the vocabulary, in order of first appearance, once each."""
        return list(dict.fromkeys(t for t in tokens if t not in self._ids))

    def save(self, path: str | Path) -> None:
        """Write the word list as JSON (``{"words": [...]}``)."""
        Path(path).write_text(json.dumps({"words": self.words}, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`.

        Raises:
            StmemError: the file is missing or is not a vocabulary file.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            words = data["words"]
        except FileNotFoundError:
            raise StmemError(f"The vocabulary file {path} does not exist.") from None
        except (json.JSONDecodeError, KeyError, TypeError):
            raise StmemError(
                f"{path} is not a vocabulary file: expected JSON with a 'words' list."
            ) from None
        return cls(words)


def default_vocabulary() -> Vocabulary:
    """Every word the story generator can write, in a fixed order.

    Order: ``<pad> <unk> <bos> <eos>``, punctuation ``. ?``, question words, actors, locations,
    objects, then the words of the action verbs.
    """
    words: list[str] = [*SPECIALS, ".", "?", "where", "is", "was", "the", "before"]
    words += [a.lower() for a in ACTORS] + list(LOCATIONS) + list(OBJECTS)
    for phrase in (*MOVE_VERBS, *GET_VERBS, *DROP_VERBS, "there"):
        words += tokenize(phrase)
    return Vocabulary(list(dict.fromkeys(words)))


@dataclass
class EncodedStory:
    """A story as padded id arrays, ready for a memory network.

    Attributes:
        sentences: ``[S, W]`` int64 word ids, one row per sentence, padded with 0.
        question: ``[W]`` int64 word ids of the question, padded with 0.
        unknown_words: words of the story or question not in the vocabulary (encoded as
            ``<unk>``), in order of first appearance.
    """

    sentences: np.ndarray
    question: np.ndarray
    unknown_words: list[str]


def encode_story(
    story_sentences: Sequence[str],
    question: str,
    vocab: Vocabulary,
    max_sentences: int | None = None,
) -> EncodedStory:
    """Tokenize and encode a story and its question with one common width ``W``.

    ``W`` is the length of the longest sentence or question in tokens, punctuation included.

    Args:
        story_sentences: the sentences, oldest first.
        question: the question text.
        vocab: the vocabulary to encode with.
        max_sentences: if given, keep only the last ``max_sentences`` sentences (the most
            recent ones), as a memory of that many slots would.

    Returns:
        The encoded story; unknown words are listed, never silently dropped.
    """
    sentences = list(story_sentences)
    if max_sentences is not None:
        sentences = sentences[-max_sentences:] if max_sentences > 0 else []
    sentence_tokens = [tokenize(s) for s in sentences]
    question_tokens = tokenize(question)
    width = max([len(question_tokens), *(len(t) for t in sentence_tokens)], default=0)

    rows = np.zeros((len(sentence_tokens), width), dtype=np.int64)  # [S, W]
    for row, tokens in zip(rows, sentence_tokens, strict=True):
        row[: len(tokens)] = vocab.encode(tokens)
    encoded_question = np.zeros(width, dtype=np.int64)  # [W]
    encoded_question[: len(question_tokens)] = vocab.encode(question_tokens)

    every_token = [t for tokens in sentence_tokens for t in tokens] + question_tokens
    return EncodedStory(rows, encoded_question, vocab.unknown(every_token))
