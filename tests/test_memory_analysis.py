"""Memory traces, slot/entity similarity, recall, ablations and the trace export behave as the
Memory page and the CLI rely on."""

import io
import random

import numpy as np
import pytest
import torch

from stmem_viz import StmemError
from stmem_viz.analysis import memory as analysis
from stmem_viz.data import default_vocabulary, generate_story, write_babi
from stmem_viz.models.story_models import StoryModel, build_network
from stmem_viz.plots.export import arrays_npz

SIZES = {"entnet": {"dim": 12, "slots": 5, "max_words": 12}, "memn2n": {"dim": 10, "hops": 2}}


def tiny_model(family: str, seed: int = 0) -> StoryModel:
    """A small untrained network of the library's own build, over the shared vocabulary."""
    torch.manual_seed(seed)
    vocab = default_vocabulary()
    network = build_network(family, len(vocab), SIZES[family]).eval()
    config = {"stmem_family": family, "name": f"tiny-{family}", "vocab_size": len(vocab)}
    return StoryModel(network, vocab, config, f"tiny-{family}", torch.device("cpu"))


@pytest.fixture(scope="module")
def entnet() -> StoryModel:
    return tiny_model("entnet")


@pytest.fixture(scope="module")
def memn2n() -> StoryModel:
    return tiny_model("memn2n")


@pytest.fixture(scope="module")
def story() -> analysis.StoryInput:
    return analysis.generated_story(2, 9, seed=3)


def test_slots_after_are_the_normalised_gated_update(entnet, story):
    trace = entnet.trace(list(story.sentences), story.question)
    update = trace.slots_before + trace.gates[..., None] * trace.candidates  # (S, N, D)
    expected = update / np.linalg.norm(update, axis=-1, keepdims=True)
    np.testing.assert_allclose(trace.slots_after, expected, atol=1e-5)
    np.testing.assert_allclose(trace.slots_before[1:], trace.slots_after[:-1])
    np.testing.assert_allclose(trace.slots_before[0], entnet.network.keys.detach().numpy())


@torch.no_grad()
def test_trace_equals_running_the_network_sentence_by_sentence(entnet, story):
    trace = entnet.trace(list(story.sentences), story.question)
    ids, q_ids, _ = entnet.encode(list(story.sentences), story.question)
    net = entnet.network
    slots = net.initial_slots(1)
    for t in range(ids.shape[0]):
        sentence = net.encode_story(torch.from_numpy(ids[None, t : t + 1]))[:, 0]
        step = net.step(slots, sentence)
        np.testing.assert_allclose(trace.gates[t], step.gates[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(trace.candidates[t], step.candidates[0].numpy(), atol=1e-6)
        slots = step.slots
    np.testing.assert_allclose(trace.slots_after[-1], slots[0].numpy(), atol=1e-5)
    batch_probs = entnet.answer_probs([(list(story.sentences), story.question)])[0]
    np.testing.assert_allclose(trace.answer_probs, batch_probs, atol=1e-5)


def test_entnet_trace_export_round_trips_through_npz(entnet, story):
    trace = entnet.trace(list(story.sentences), story.question)
    arrays = analysis.trace_arrays(trace, entnet.vocab)
    loaded = np.load(io.BytesIO(arrays_npz(**arrays)), allow_pickle=False)
    assert set(loaded.files) >= {
        "sentences",
        "slots_before",
        "slots_after",
        "gates",
        "candidates",
        "read_attention",
        "answer_probs",
        "vocabulary",
    }
    s, n, d = len(story.sentences), SIZES["entnet"]["slots"], SIZES["entnet"]["dim"]
    assert loaded["slots_before"].shape == (s, n, d)
    assert loaded["gates"].shape == (s, n)
    assert loaded["answer_probs"].shape == (len(entnet.vocab),)
    assert list(loaded["sentences"]) == list(story.sentences)
    assert list(loaded["vocabulary"]) == entnet.vocab.words
    for name in ("slots_before", "slots_after", "gates", "candidates", "read_attention"):
        np.testing.assert_allclose(loaded[name], getattr(trace, name))


def test_memn2n_trace_export_has_hop_attention(memn2n, story):
    trace = memn2n.trace(list(story.sentences), story.question)
    arrays = analysis.trace_arrays(trace, memn2n.vocab)
    assert arrays["hop_attention"].shape == (SIZES["memn2n"]["hops"], len(story.sentences))
    assert "slots_before" not in arrays
    np.testing.assert_allclose(arrays["hop_attention"].sum(-1), 1.0, atol=1e-5)


def test_cosine_similarity_on_constructed_vectors():
    slots = np.array([[[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]])  # (T=1, N=3, D=2)
    vectors = np.array([[3.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])  # (E=3, D=2)
    got = analysis.cosine_similarity(slots, vectors)
    expected = np.array(
        [[[1.0, 1 / np.sqrt(2), -1.0], [0.0, 1 / np.sqrt(2), 0.0], [0.0, 0.0, 0.0]]]
    )
    assert got.shape == (1, 3, 3)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_word_vectors_are_the_story_encoder_applied_to_one_word(entnet):
    vectors = analysis.word_vectors(entnet, ["mary", "kitchen"])
    net = entnet.network
    for row, word in zip(vectors, ["mary", "kitchen"], strict=True):
        expected = net.embedding.weight[entnet.vocab.id(word)] * net.story_mask[0]
        np.testing.assert_allclose(row, expected.detach().numpy(), atol=1e-6)


def test_slot_entity_similarity_tracks_every_step(entnet, story):
    trace = entnet.trace(list(story.sentences), story.question)
    words = [w for group in analysis.entity_words(entnet.vocab).values() for w in group]
    sims = analysis.slot_entity_similarity(entnet, trace, words)
    assert sims.shape == (len(story.sentences), SIZES["entnet"]["slots"], len(words))
    assert np.all(np.abs(sims) <= 1 + 1e-5)
    assert "mary" in words and "kitchen" in words and "football" in words


def test_silenced_slot_gets_no_read_attention_and_changes_the_answer(entnet, story):
    full = entnet.trace(list(story.sentences), story.question)
    strongest = int(full.read_attention.argmax())
    ablated = entnet.trace(list(story.sentences), story.question, silence_slots=[strongest])
    assert ablated.read_attention[strongest] == 0.0
    np.testing.assert_allclose(ablated.read_attention.sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(ablated.slots_after, full.slots_after)  # writes are unchanged
    assert not np.allclose(ablated.answer_probs, full.answer_probs)


def test_removed_sentence_gets_no_hop_attention(memn2n, story):
    full = memn2n.trace(list(story.sentences), story.question)
    dropped = int(full.hop_attention[-1].argmax())
    ablated = memn2n.trace(list(story.sentences), story.question, drop_sentences=[dropped])
    assert np.all(ablated.hop_attention[:, dropped] == 0.0)
    np.testing.assert_allclose(ablated.hop_attention.sum(-1), 1.0, atol=1e-5)
    assert not np.allclose(ablated.answer_probs, full.answer_probs)


def test_ablation_effect_states_the_change_of_the_followed_answer(entnet, story):
    vocab = entnet.vocab
    before = np.zeros(len(vocab))
    after = np.zeros(len(vocab))
    before[vocab.id("kitchen")], before[vocab.id("garden")] = 0.8, 0.2
    after[vocab.id("kitchen")], after[vocab.id("garden")] = 0.3, 0.7
    effect = analysis.ablation_effect(before, after, vocab.id("kitchen"), vocab)
    assert effect.change == pytest.approx(-0.5)
    text = effect.sentence("Slot 2 silenced")
    assert "falls from 0.800 to 0.300 (-0.500)" in text
    assert "'kitchen' to 'garden'" in text


@pytest.mark.parametrize("family", ["entnet", "memn2n"])
def test_recall_ends_at_the_final_answer(family, story, entnet, memn2n):
    model = entnet if family == "entnet" else memn2n
    trace = model.trace(list(story.sentences), story.question)
    answer_id, word, source = analysis.target_answer(story, trace.answer_probs, model.vocab)
    assert (word, source) == (story.answer, "story answer")
    curve = analysis.recall_over_time(model, trace, answer_id)
    assert curve.shape == (len(story.sentences),)
    assert curve[-1] == pytest.approx(float(trace.answer_probs[answer_id]), abs=1e-5)


def test_typed_story_follows_the_models_own_answer(entnet):
    story = analysis.stories_from_text("Mary went to the office.\nWhere is Mary?")[0]
    assert story.answer is None
    probs = entnet.trace(list(story.sentences), story.question).answer_probs
    answer_id, _, source = analysis.target_answer(story, probs, entnet.vocab)
    assert answer_id == int(probs.argmax()) and source == "model's answer"


def test_babi_text_keeps_answers_and_supporting_facts():
    stories = [generate_story(1, random.Random(i), n_sentences=4) for i in range(2)]
    read = analysis.stories_from_text(write_babi(stories))
    assert len(read) == 2
    assert read[1].sentences == stories[1].sentences
    assert read[1].answer == stories[1].question.answer
    assert read[1].support == stories[1].question.support


def test_babi_lines_without_answers_read_like_typed_text():
    read = analysis.stories_from_text("1 Mary went to the kitchen.\n2 Where is Mary?\n")
    assert read == [analysis.StoryInput(("Mary went to the kitchen.",), "Where is Mary?")]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"Mary went to the kitchen.\n", "no question"),
        (b"Where is Mary?\n", "no sentences"),
        (b"\xff\xfe\x00garbage\x00", "not a text file"),
        (b"\xc3\x28 went home?", "not UTF-8"),
        (b"1 Mary went home.\n3 Where is Mary?\tgarden\t1\n", "ids must count up"),
    ],
)
def test_bad_uploads_raise_a_sentence_the_user_can_act_on(data, message):
    with pytest.raises(StmemError, match=message):
        analysis.stories_from_bytes(data, "story.txt")


def test_load_story_file_picks_a_story_by_index(tmp_path):
    stories = [generate_story(2, random.Random(i), n_sentences=5) for i in range(3)]
    path = tmp_path / "qa2_test.txt"
    path.write_text(write_babi(stories))
    assert analysis.load_story_file(path).sentences == stories[0].sentences
    assert analysis.load_story_file(path, 2).question == stories[2].question.text
    with pytest.raises(StmemError, match="holds 3 stories"):
        analysis.load_story_file(path, 3)
    with pytest.raises(StmemError, match="does not exist"):
        analysis.load_story_file(tmp_path / "missing.txt")


def test_unmentioned_words_name_what_the_story_never_says():
    sentences = ["Mary went to the kitchen.", "John got the milk."]
    assert analysis.unmentioned_words(sentences, "Where is Mary?") == []
    assert analysis.unmentioned_words(sentences, "Where is Daniel?") == ["daniel"]
    assert analysis.unmentioned_words(sentences, "Where is the apple?") == ["apple"]


def test_word_vectors_need_an_entnet(memn2n):
    with pytest.raises(StmemError, match="needs an EntNet"):
        analysis.word_vectors(memn2n, ["mary"])
