"""Memory figures: shapes, colour scales, marks and literal text, checked on the figure objects."""

import numpy as np
import pytest

from stmem_viz.plots import memory as figures
from stmem_viz.plots.common import safe_label

HTML_SENTENCE = "Mary <b>went</b> to the <img src=x> & kitchen."


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_state_heatmaps_share_one_scale_and_the_difference_has_its_own(rng):
    before = rng.normal(size=(4, 6)) * 0.3
    after = before + rng.normal(size=(4, 6)) * 0.01
    fig = figures.slot_state_heatmaps(before, after, HTML_SENTENCE)
    assert [t.coloraxis for t in fig.data] == ["coloraxis", "coloraxis", "coloraxis2"]
    state_max = max(np.abs(before).max(), np.abs(after).max())
    assert fig.layout.coloraxis.cmin == pytest.approx(-state_max, rel=1e-5)
    assert fig.layout.coloraxis.cmax == pytest.approx(state_max, rel=1e-5)
    change_max = np.abs(after.astype(np.float32) - before.astype(np.float32)).max()
    assert fig.layout.coloraxis2.cmax == pytest.approx(change_max, rel=1e-4)
    assert fig.layout.coloraxis2.cmin == -fig.layout.coloraxis2.cmax
    np.testing.assert_allclose(fig.data[2].z, after - before, atol=1e-6)
    assert "own scale" in fig.layout.annotations[2].text
    assert "<b>" not in fig.layout.title.text and safe_label("<b>") in fig.layout.title.text


def test_write_timeline_labels_sentences_literally_and_marks_support(rng):
    sentences = ["John went to the garden.", HTML_SENTENCE, "Sandra got the milk."]
    fig = figures.write_timeline(rng.random((3, 5)), sentences, support=[1], step=2)
    labels = list(fig.layout.yaxis.ticktext)
    assert labels[0] == "1: John went to the garden."
    assert labels[1].startswith(figures.SUPPORT_MARK) and safe_label("<img src=x> &") in labels[1]
    assert fig.layout.yaxis.autorange == "reversed"
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0.0, 1.0)
    assert fig.layout.shapes[0].y0 == pytest.approx(1.5)


def test_answer_bars_show_the_top_k_and_always_the_followed_answer():
    words = ["<pad>", "<unk>", "kitchen", "garden", "office", "milk"]
    probs = np.array([0.0, 0.0, 0.5, 0.3, 0.15, 0.05])
    fig = figures.answer_bars(probs, words, k=2, answer="milk")
    assert list(fig.data[0].y) == ["kitchen", "garden", "milk"]
    np.testing.assert_allclose(fig.data[0].x, [0.5, 0.3, 0.05])
    assert list(fig.data[0].marker.color)[-1] == figures.HIGHLIGHT
    assert "&lt;pad>" not in fig.data[0].y


def test_hop_heatmap_is_sentences_by_hops_with_out_of_memory_marked(rng):
    attention = rng.random((3, 4))
    attention /= attention.sum(-1, keepdims=True)
    fig = figures.hop_attention_heatmap(
        attention, ["a.", "b.", "c.", "d."], support=[3], in_memory=[False, True, True, True]
    )
    assert np.asarray(fig.data[0].z).shape == (4, 3)
    assert list(fig.data[0].x) == ["hop 1", "hop 2", "hop 3"]
    labels = list(fig.layout.yaxis.ticktext)
    assert labels[0].endswith("(out)") and labels[3].startswith(figures.SUPPORT_MARK)


def test_recall_curve_hovers_the_sentence_and_marks_facts_and_step():
    probs = np.array([0.1, 0.9, 0.8, 0.2])
    fig = figures.recall_curve(probs, ["a.", HTML_SENTENCE, "c.", "d."], "kitchen", [1], step=3)
    assert list(fig.data[0].x) == [1, 2, 3, 4]
    assert fig.data[0].customdata[1] == safe_label(HTML_SENTENCE)
    assert "<" not in fig.data[0].customdata[1]
    assert [s.x0 for s in fig.layout.shapes] == [2, 4]
    assert "P(kitchen)" in fig.layout.title.text


def test_ablation_bars_compare_both_distributions_on_the_same_words():
    words = ["<pad>", "<unk>", "kitchen", "garden", "office"]
    before = np.array([0, 0, 0.9, 0.05, 0.05])
    after = np.array([0, 0, 0.2, 0.7, 0.1])
    fig = figures.ablation_bars(before, after, words, "slot 2 silenced", k=1, answer="office")
    assert [t.name for t in fig.data] == ["full memory", "slot 2 silenced"]
    assert list(fig.data[0].x) == list(fig.data[1].x) == ["kitchen", "garden", "office"]
    np.testing.assert_allclose(fig.data[1].y, [0.2, 0.7, 0.1])


def test_gate_and_read_bars_mark_silenced_slots():
    gates = figures.gate_bars(np.array([0.1, 0.9, 0.5]))
    assert list(gates.layout.yaxis.range) == [0, 1]
    read = figures.read_attention_bars(np.array([0.0, 0.7, 0.3]), silenced=[0])
    assert list(read.data[0].marker.color) == [figures.HIGHLIGHT] + [figures.BASE_COLOUR] * 2
    assert "silenced" in read.layout.title.text


def test_entity_figures_use_a_fixed_cosine_scale(rng):
    at_step = figures.slot_entity_heatmap(rng.uniform(-1, 1, (3, 2)), ["mary", "<kitchen>"])
    assert (at_step.data[0].zmin, at_step.data[0].zmax) == (-1.0, 1.0)
    assert list(at_step.data[0].x) == ["mary", safe_label("<kitchen>")]
    over_time = figures.entity_over_time(rng.uniform(-1, 1, (4, 3)), list("abcd"), "mary")
    assert np.asarray(over_time.data[0].z).shape == (4, 3)
    assert "'mary'" in over_time.layout.title.text


def test_long_stories_thin_the_sentence_ticks(rng):
    fig = figures.write_timeline(rng.random((200, 4)), [f"s{i}." for i in range(200)])
    assert 50 <= len(fig.layout.yaxis.tickvals) <= 80
    assert fig.layout.height <= 1400
