"""The shared word-level vocabulary and story encoding."""

from __future__ import annotations

import numpy as np
import pytest

from stmem_viz import StmemError
from stmem_viz.data import (
    PAD,
    UNK,
    Vocabulary,
    default_vocabulary,
    encode_story,
    generate_stories,
    tokenize,
)


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize("Where is Mary?") == ["where", "is", "mary", "?"]
    assert tokenize("  Mary, go!John went.") == ["mary", ",", "go", "!", "john", "went", "."]
    assert tokenize("") == []


def test_default_vocabulary_covers_every_generated_word_in_a_fixed_order():
    vocab = default_vocabulary()
    assert vocab.words[:2] == [PAD, UNK] and vocab.id(PAD) == 0 and vocab.id(UNK) == 1
    assert vocab == default_vocabulary()
    for task in (1, 2, 3):
        for story in generate_stories(task, 200, seed=9, max_sentences=20):
            text = " ".join([*story.sentences, story.question.text, story.question.answer])
            assert vocab.unknown(tokenize(text)) == []


def test_unknown_words_map_to_unk_and_are_reported_once_in_order():
    vocab = default_vocabulary()
    tokens = tokenize("Mary flew to the moon, then the moon!")
    assert vocab.encode(tokens).count(vocab.id(UNK)) == 6
    assert vocab.unknown(tokens) == ["flew", "moon", ",", "then", "!"]


def test_encode_decode_round_trip():
    vocab = default_vocabulary()
    tokens = tokenize("Sandra picked up the milk there.")
    assert vocab.decode(vocab.encode(tokens)) == tokens
    with pytest.raises(StmemError, match="outside"):
        vocab.decode([len(vocab)])


def test_save_and_load_keep_the_ids(tmp_path):
    vocab = default_vocabulary()
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json").words == vocab.words
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(StmemError, match="not a vocabulary"):
        Vocabulary.load(tmp_path / "bad.json")
    with pytest.raises(StmemError, match="start with"):
        Vocabulary(["a", "b"])


def test_encode_story_pads_to_one_width_and_reports_unknown_words():
    vocab = default_vocabulary()
    sentences = ["Mary went to the kitchen.", "John teleported to the moon.", "Mary got the milk."]
    encoded = encode_story(sentences, "Where is Mary?", vocab)
    assert encoded.sentences.shape == (3, 6) and encoded.sentences.dtype == np.int64
    assert encoded.question.shape == (6,) and encoded.question.dtype == np.int64
    assert vocab.decode(encoded.sentences[2][:5]) == ["mary", "got", "the", "milk", "."]
    assert encoded.sentences[2][5] == 0 and encoded.question[4:].tolist() == [0, 0]
    assert encoded.unknown_words == ["teleported", "moon"]


def test_encode_story_keeps_the_last_sentences():
    vocab = default_vocabulary()
    sentences = ["Mary went to the kitchen.", "John teleported far.", "Mary got the milk."]
    encoded = encode_story(sentences, "Where is Mary?", vocab, max_sentences=1)
    assert encoded.sentences.shape[0] == 1
    assert vocab.decode(encoded.sentences[0][:2]) == ["mary", "got"]
    assert encoded.unknown_words == []
    assert encode_story(sentences, "Where is Mary?", vocab, max_sentences=0).sentences.shape[0] == 0
