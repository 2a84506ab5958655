"""Attention metrics on hand-made matrices and on tiny real models."""

from __future__ import annotations

import numpy as np
import pytest

from stmem_viz import StmemError
from stmem_viz.analysis.attention import (
    _induction_tokens,
    head_metrics,
    head_metrics_from_weights,
    hide_tokens,
    induction_scores,
    rollout,
    softmax_rows,
)
from stmem_viz.models.capture import capture_attention, run_with_attention

TEXT = "mary went to the kitchen . john moved to the garden . where is mary ?"


def _uniform_causal(t: int) -> np.ndarray:
    """[t, t]: query i spreads its attention evenly over keys 0..i."""
    lower = np.tril(np.ones((t, t)))
    return lower / lower.sum(axis=1, keepdims=True)


def _previous_token(t: int) -> np.ndarray:
    """[t, t]: query 0 attends to itself, query i >= 1 to key i - 1."""
    weights = np.zeros((t, t))
    weights[0, 0] = 1.0
    weights[np.arange(1, t), np.arange(t - 1)] = 1.0
    return weights


def test_identity_head_has_zero_entropy_and_distance():
    metrics = head_metrics_from_weights(np.eye(5)[None])
    assert metrics["entropy"][0] == pytest.approx(0.0)
    assert metrics["mean_distance"][0] == pytest.approx(0.0)
    assert metrics["first_token_mass"][0] == pytest.approx(1 / 5)
    assert metrics["prev_token_score"][0] == pytest.approx(0.0)


def test_uniform_causal_head_metrics_have_closed_forms():
    t = 6
    metrics = head_metrics_from_weights(_uniform_causal(t)[None])
    rows = np.arange(1, t + 1)  # query i sees i + 1 keys
    assert metrics["entropy"][0] == pytest.approx(np.mean(np.log(rows)))
    assert metrics["first_token_mass"][0] == pytest.approx(np.mean(1 / rows))
    assert metrics["prev_token_score"][0] == pytest.approx(np.mean(1 / rows[1:]))
    # mean of |i - j| over j <= i is i / 2
    assert metrics["mean_distance"][0] == pytest.approx(np.mean(np.arange(t) / 2))


def test_previous_token_head_scores_one():
    metrics = head_metrics_from_weights(np.stack([_previous_token(7), np.eye(7)]))
    np.testing.assert_allclose(metrics["prev_token_score"], [1.0, 0.0])
    assert metrics["mean_distance"][0] == pytest.approx(6 / 7)
    assert metrics["entropy"].shape == (2,)


def test_softmax_rows_honours_minus_infinity():
    scores = np.array([[0.0, 0.0, -np.inf], [-np.inf, -np.inf, -np.inf], [1.0, 2.0, 3.0]])
    weights = softmax_rows(scores)
    np.testing.assert_allclose(weights[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(weights[1], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(weights[2], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())


def test_softmax_of_captured_scores_gives_captured_weights(tiny_loaded):
    capture = capture_attention(tiny_loaded["llama"], TEXT, layers=[0])
    key = ("self", 0)
    np.testing.assert_allclose(softmax_rows(capture.scores[key]), capture.weights[key], atol=1e-5)


def test_rollout_of_identity_layers_is_identity():
    layers = [np.stack([np.eye(4)] * 3)] * 5
    np.testing.assert_allclose(rollout(layers, residual=0.3), np.eye(4))


def test_rollout_mixes_residual_and_multiplies_bottom_up():
    first, second = _uniform_causal(3)[None], _previous_token(3)[None]
    mixed = [0.5 * np.eye(3) + 0.5 * layer[0] for layer in (first, second)]
    result = rollout([first, second], residual=0.5)
    np.testing.assert_allclose(result, mixed[1] @ mixed[0])
    np.testing.assert_allclose(result.sum(axis=1), 1.0)
    # with no residual, one layer's rollout is the head average itself
    np.testing.assert_allclose(rollout([first], residual=0.0), first[0])


def test_hide_tokens_drops_and_renormalises_rows():
    weights = np.stack([_uniform_causal(4), np.eye(4)])  # [2, 4, 4]
    hide = np.array([True, False, False, False])
    kept, kept_q, kept_k = hide_tokens(weights, hide, hide, renormalise=True)
    assert kept.shape == (2, 3, 3)
    assert kept_q.tolist() == [1, 2, 3] and kept_k.tolist() == [1, 2, 3]
    np.testing.assert_allclose(kept.sum(axis=-1), 1.0)
    np.testing.assert_allclose(kept[0, 0], [1.0, 0.0, 0.0])


def test_hide_tokens_keeps_empty_rows_zero_and_can_skip_renormalising():
    weights = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    hide_k = np.array([True, False, False])
    kept, _, _ = hide_tokens(weights, np.zeros(3, bool), hide_k, renormalise=True)
    np.testing.assert_allclose(kept, [[0.0, 0.0], [1.0, 0.0], [0.375, 0.625]])
    raw, _, _ = hide_tokens(weights, np.zeros(3, bool), hide_k, renormalise=False)
    np.testing.assert_allclose(raw, weights[:, 1:])


def test_head_metrics_cover_every_stack_layer_and_head(tiny_loaded):
    frame = head_metrics(tiny_loaded["bart"], TEXT, target="mary is in the kitchen .")
    assert len(frame) == 3 * 2 * 4
    assert list(frame["stack"].unique()) == ["encoder", "decoder", "cross"]
    assert frame[["entropy", "mean_distance"]].ge(0).all().all()
    assert frame["first_token_mass"].between(0, 1).all()


def test_head_metrics_stream_the_same_values_as_a_full_capture(tiny_loaded):
    loaded = tiny_loaded["gpt2"]
    frame = head_metrics(loaded, TEXT)
    capture = capture_attention(loaded, TEXT, layers=[1])
    expected = head_metrics_from_weights(capture.weights[("self", 1)])
    layer = frame[frame["layer"] == 1].sort_values("head")
    for name, values in expected.items():
        np.testing.assert_allclose(layer[name].to_numpy(), values, atol=1e-6)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_induction_scores_lie_in_unit_interval_for_every_head(tiny_loaded, family):
    frame = induction_scores(tiny_loaded[family], seq_len=12, batch=2)
    assert len(frame) == 2 * 4
    heads = set(zip(frame["layer"], frame["head"], strict=True))
    assert heads == {(layer, head) for layer in (0, 1) for head in range(4)}
    assert frame["induction"].between(0, 1).all()
    assert frame["induction"].gt(0).all()


def test_induction_score_reads_the_token_after_the_earlier_occurrence(tiny_loaded):
    loaded = tiny_loaded["llama"]
    tokens, offset, seq_len = _induction_tokens(loaded, seq_len=10, seed=0, batch=1)
    assert offset == 1 and tokens.shape == (1, 21)
    assert tokens[0, 1:11].tolist() == tokens[0, 11:].tolist()
    weights = {}
    inputs = {"input_ids": tokens, "attention_mask": tokens.new_ones(tokens.shape)}
    run_with_attention(loaded, inputs, lambda s, i, w, sc: weights.setdefault(i, w[0].numpy()))

    frame = induction_scores(loaded, seq_len=10, seed=0, batch=1)
    for layer, w in weights.items():
        # second-copy token at offset + seq_len + i; its earlier copy's successor at offset + i + 1
        expected = [
            np.mean([w[head, offset + seq_len + i, offset + i + 1] for i in range(seq_len)])
            for head in range(4)
        ]
        got = frame[frame["layer"] == layer].sort_values("head")["induction"].to_numpy()
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_induction_scores_are_reproducible_and_clip_to_context(tiny_loaded):
    loaded = tiny_loaded["gpt2"]  # context 64: seq_len 50 is lowered to fit two copies
    first = induction_scores(loaded, seq_len=50, seed=3, batch=1)
    again = induction_scores(loaded, seq_len=50, seed=3, batch=1)
    np.testing.assert_array_equal(first["induction"], again["induction"])


def test_induction_scores_need_a_decoder(tiny_loaded):
    with pytest.raises(StmemError, match="decoder"):
        induction_scores(tiny_loaded["bert"])
