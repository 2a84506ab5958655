"""Attention capture: weights equal an independent softmax(Q K^T * scale + mask) computation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from tiny_models import HTML_TOKEN, gpt2_tokenizer
from transformers import AttentionInterface, GPTNeoConfig, GPTNeoForCausalLM
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from stmem_viz import StmemError
from stmem_viz.models.capture import (
    CAPTURE_IMPLEMENTATION,
    capture_attention,
    module_positions,
    readable_tokens,
    run_with_attention,
    tokenize_for,
)
from stmem_viz.models.hf import load_model

TEXT = "mary went to the kitchen . john moved to the garden . where is mary ?"
TARGET = "mary is in the kitchen ."


def _record_inputs(module: torch.nn.Module, store: dict) -> torch.utils.hooks.RemovableHandle:
    """Keep the keyword and positional inputs of ``module``'s next forward call."""

    def hook(mod, args, kwargs):
        store["args"], store["kwargs"] = args, kwargs

    return module.register_forward_pre_hook(hook, with_kwargs=True)


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[B, T, n_heads * d] -> [B, n_heads, T, d]."""
    b, t, _ = x.shape
    return x.view(b, t, n_heads, -1).transpose(1, 2)


def _reference(q: torch.Tensor, k: torch.Tensor, causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """softmax(Q K^T / sqrt(d) + mask) for batch 0: (weights [H, q, k], scores [H, q, k])."""
    k = repeat_kv(k, q.shape[1] // k.shape[1])
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    if causal:
        upper = torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1)
        scores = scores.masked_fill(upper, float("-inf"))
    return torch.softmax(scores, -1)[0].numpy(), scores[0].numpy()


def _layer_input(loaded, module, **capture_kwargs):
    """Capture attention while recording what ``module`` received in the same forward."""
    store: dict = {}
    handle = _record_inputs(module, store)
    try:
        capture = capture_attention(loaded, TEXT, **capture_kwargs)
    finally:
        handle.remove()
    return capture, _hidden(store), store["kwargs"]


def _hidden(store: dict) -> torch.Tensor:
    """The hidden states a recorded attention call received: [B, T, C]."""
    return store["kwargs"].get("hidden_states", store["args"][0] if store["args"] else None)


def _assert_matches(capture, key, expected_w, expected_s, causal):
    weights, scores = capture.weights[key], capture.scores[key]
    np.testing.assert_allclose(weights, expected_w, atol=1e-5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    finite = np.isfinite(expected_s)
    assert (np.isfinite(scores) == finite).all()
    np.testing.assert_allclose(scores[finite], expected_s[finite], atol=1e-4)
    if causal:
        upper = np.triu(np.ones(weights.shape[-2:], dtype=bool), 1)
        assert (weights[:, upper] == 0).all()
        assert np.isneginf(scores[:, upper]).all()
    # peaked weights: a wrong scale or mask would move them well beyond the tolerance
    assert weights.max() > 0.3


def test_gpt2_weights_equal_softmax_of_own_projections(tiny_loaded):
    loaded = tiny_loaded["gpt2"]
    attn = loaded.model.transformer.h[1].attn
    capture, hidden, _ = _layer_input(loaded, attn, layers=[1])

    # GPT-2 projects q, k, v with one fused Conv1D: x @ W + b, W [C, 3C]
    q, k, _ = (hidden @ attn.c_attn.weight + attn.c_attn.bias).split(attn.embed_dim, dim=2)
    expected_w, expected_s = _reference(_heads(q, 4), _heads(k, 4), causal=True)
    _assert_matches(capture, ("self", 1), expected_w, expected_s, causal=True)
    assert set(capture.weights) == {("self", 1)}


def test_llama_weights_use_rope_and_grouped_kv_heads(tiny_loaded):
    loaded = tiny_loaded["llama"]
    attn = loaded.model.model.layers[1].self_attn
    capture, hidden, kwargs = _layer_input(loaded, attn, layers=[1])

    q = _heads(attn.q_proj(hidden), 4)
    k = _heads(attn.k_proj(hidden), 2)
    positions = torch.arange(hidden.shape[1])[None]
    cos, sin = loaded.model.model.rotary_emb(hidden, positions)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    expected_w, expected_s = _reference(q, k, causal=True)
    _assert_matches(capture, ("self", 1), expected_w, expected_s, causal=True)
    # grouped-query attention: heads 0 and 1 share key head 0 yet differ through their queries
    assert not np.allclose(capture.weights[("self", 1)][0], capture.weights[("self", 1)][1])


def test_bert_weights_are_bidirectional_softmax(tiny_loaded):
    loaded = tiny_loaded["bert"]
    attn = loaded.model.bert.encoder.layer[0].attention.self
    capture, hidden, _ = _layer_input(loaded, attn, layers=[0])

    q, k = _heads(attn.query(hidden), 4), _heads(attn.key(hidden), 4)
    expected_w, expected_s = _reference(q, k, causal=False)
    _assert_matches(capture, ("self", 0), expected_w, expected_s, causal=False)
    upper = np.triu(np.ones(expected_w.shape[-2:], dtype=bool), 1)
    assert (capture.weights[("self", 0)][:, upper] > 0).all()


@pytest.mark.parametrize("stack", ["encoder", "decoder", "cross"])
def test_bart_encoder_decoder_and_cross_attention(tiny_loaded, stack):
    loaded = tiny_loaded["bart"]
    model = loaded.model.model
    attn = {
        "encoder": model.encoder.layers[1].self_attn,
        "decoder": model.decoder.layers[1].self_attn,
        "cross": model.decoder.layers[1].encoder_attn,
    }[stack]
    store: dict = {}
    handle = _record_inputs(attn, store)
    try:
        capture = capture_attention(loaded, TEXT, target=TARGET, layers=[1], stacks=[stack])
    finally:
        handle.remove()
    hidden = _hidden(store)
    source = store["kwargs"].get("key_value_states")
    source = hidden if source is None else source

    q, k = _heads(attn.q_proj(hidden), 4), _heads(attn.k_proj(source), 4)
    expected_w, expected_s = _reference(q, k, causal=stack == "decoder")
    _assert_matches(capture, (stack, 1), expected_w, expected_s, causal=stack == "decoder")
    n_source, n_target = len(capture.tokens), len(capture.target_tokens)
    shapes = {"encoder": (n_source, n_source), "decoder": (n_target, n_target)}
    assert capture.weights[(stack, 1)].shape[1:] == shapes.get(stack, (n_target, n_source))


def test_uncaptured_layers_keep_stock_sdpa_and_logits_match(tiny_loaded, monkeypatch):
    loaded = tiny_loaded["gpt2"]
    inputs, *_ = tokenize_for(loaded, TEXT)
    with torch.inference_mode():
        plain = loaded.model(**inputs).logits

    stock = AttentionInterface._global_mapping["sdpa"]
    stock_calls = []

    def counting_sdpa(module, *args, **kwargs):
        stock_calls.append(module_positions(loaded)[id(module)])
        return stock(module, *args, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, "sdpa", counting_sdpa)
    events = []
    run = run_with_attention(loaded, inputs, lambda s, i, w, sc: events.append((s, i)), layers=[1])

    assert events == [("self", 1)]
    assert stock_calls == [("self", 0)]
    assert run.note is None
    torch.testing.assert_close(run.outputs.logits, plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["llama", "bart"])
def test_capture_all_layers_leaves_logits_unchanged(tiny_loaded, family):
    loaded = tiny_loaded[family]
    inputs, *_ = tokenize_for(loaded, TEXT)
    with torch.inference_mode():
        plain = loaded.model(**inputs).logits
    run = run_with_attention(loaded, inputs, lambda *event: None)
    # float32 rounding of an explicit softmax vs the fused kernel, through every layer
    torch.testing.assert_close(run.outputs.logits, plain, atol=1e-5, rtol=1e-5)


def test_attention_implementation_is_restored_even_after_an_error(tiny_loaded):
    loaded = tiny_loaded["bart"]
    capture_attention(loaded, TEXT, layers=[0])
    assert loaded.model.config._attn_implementation == "sdpa"
    assert loaded.model.model.encoder.config._attn_implementation == "sdpa"

    def fail(*event):
        raise RuntimeError("stop")

    inputs, *_ = tokenize_for(loaded, TEXT)
    with pytest.raises(RuntimeError, match="stop"):
        run_with_attention(loaded, inputs, fail)
    assert loaded.model.config._attn_implementation == "sdpa"
    assert CAPTURE_IMPLEMENTATION in AttentionInterface._global_mapping


def test_other_threads_run_stock_attention_during_a_capture(tiny_loaded):
    loaded = tiny_loaded["gpt2"]
    inputs, *_ = tokenize_for(loaded, TEXT)
    with torch.inference_mode():
        plain = loaded.model(**inputs).logits
    seen_in_thread = []

    def other_thread_forward(*event):
        def forward():
            with torch.inference_mode():
                seen_in_thread.append(loaded.model(**inputs).logits)

        worker = threading.Thread(target=forward)
        worker.start()
        worker.join()

    run_with_attention(loaded, inputs, other_thread_forward, layers=[0])
    torch.testing.assert_close(seen_in_thread[0], plain, atol=1e-5, rtol=0)


def test_model_without_attention_interface_falls_back_to_eager(tmp_path):
    tokenizer = gpt2_tokenizer()
    torch.manual_seed(0)
    config = GPTNeoConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        attention_types=[[["global", "local"], 1]],
        window_size=4,
        max_position_embeddings=64,
        intermediate_size=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPTNeoForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), device="cpu")

    capture = capture_attention(loaded, TEXT)
    assert capture.note and "eager" in capture.note
    assert capture.scores is None
    assert set(capture.weights) == {("self", 0), ("self", 1)}
    local = capture.weights[("self", 1)]
    np.testing.assert_allclose(local.sum(-1), 1.0, atol=1e-5)
    assert (np.triu(local, 1) == 0).all()
    # the local layer sees only the last 4 positions
    assert (np.tril(local, -4) == 0).all()


def test_empty_text_is_refused(tiny_loaded):
    with pytest.raises(StmemError, match="Enter some text"):
        capture_attention(tiny_loaded["gpt2"], "  \n\t ")


def test_long_text_is_truncated_and_counted(tiny_loaded):
    loaded = tiny_loaded["bert"]
    text = "the cat sat on the mat . " * 30  # 7 words x 30 = 210 words, +[CLS] +[SEP]
    capture = capture_attention(loaded, text, layers=[0], max_tokens=40)
    assert capture.truncated
    assert capture.n_input_tokens == 212
    assert len(capture.tokens) == 40
    assert capture.tokens[0] == "[CLS]" and capture.tokens[-1] == "[SEP]"
    assert capture.weights[("self", 0)].shape == (4, 40, 40)

    short = capture_attention(loaded, "the cat", layers=[0])
    assert not short.truncated and short.n_input_tokens == 4


def test_truncation_respects_the_model_context(tiny_loaded):
    loaded = tiny_loaded["gpt2"]  # n_positions = 64
    capture = capture_attention(loaded, "the cat sat on the mat . " * 40, max_tokens=512)
    assert capture.truncated and len(capture.tokens) == 64


def test_markup_tokens_come_through_as_literal_text(tiny_loaded):
    for family in ("gpt2", "llama", "bert", "bart"):
        capture = capture_attention(tiny_loaded[family], f"the cat {HTML_TOKEN} sat", layers=[0])
        assert HTML_TOKEN in capture.tokens, family


def test_special_tokens_are_flagged(tiny_loaded):
    bert = capture_attention(tiny_loaded["bert"], "the cat zebra", layers=[0])
    assert bert.tokens == ["[CLS]", "the", "cat", "[UNK]", "[SEP]"]
    assert bert.special.tolist() == [True, False, False, False, True]

    bart = capture_attention(tiny_loaded["bart"], "the cat", layers=[0])
    assert bart.target_tokens == ["</s>", "<s>", "the", "cat"]
    assert bart.target_special.tolist() == [True, True, False, False]


def test_byte_level_tokens_are_readable(tiny_loaded):
    tokenizer = tiny_loaded["gpt2"].tokenizer
    ids = tokenizer("Mary went to the kitchen\n\tsat é")["input_ids"]
    tokens = readable_tokens(tokenizer, ids)
    assert "Ġ" not in "".join(tokens) and "Ċ" not in "".join(tokens)
    assert "␣went" in tokens and "↵" in "".join(tokens) and "⇥" in "".join(tokens)
    assert "".join(tokens).endswith("\\xc3\\xa9")


def test_unknown_layer_or_stack_is_refused(tiny_loaded):
    with pytest.raises(StmemError, match="0..1"):
        capture_attention(tiny_loaded["gpt2"], TEXT, layers=[5])
    with pytest.raises(StmemError, match="no stack"):
        capture_attention(tiny_loaded["gpt2"], TEXT, stacks=["cross"])


def test_bfloat16_model_gives_float32_weights_that_sum_to_one(tiny_model_dirs):
    loaded = load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype="bfloat16")
    capture = capture_attention(loaded, TEXT, layers=[1])
    weights = capture.weights[("self", 1)]
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert (np.triu(weights, 1) == 0).all()
