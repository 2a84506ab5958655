"""Loading Hugging Face models: facts about the loaded model and clear errors for bad specs."""

from __future__ import annotations

import shutil
import time

import pytest
import torch
from huggingface_hub import constants as hub_constants
from transformers import MambaConfig, MambaForCausalLM

from stmem_viz import StmemError
from stmem_viz.models.hf import load_model


def test_summary_describes_each_family(tiny_loaded):
    expected = {
        "gpt2": ("decoder", "2", "4", "4"),
        "llama": ("decoder", "2", "4", "2"),
        "bert": ("encoder", "2", "4", "4"),
        "bart": ("encoder-decoder", "2 encoder + 2 decoder", "4", "4"),
    }
    for family, (kind, layers, heads, kv_heads) in expected.items():
        loaded = tiny_loaded[family]
        summary = loaded.summary()
        assert (summary["kind"], summary["layers"], summary["heads"], summary["kv heads"]) == (
            kind,
            layers,
            heads,
            kv_heads,
        ), family
        assert loaded.n_params > 0 and loaded.memory_bytes >= 4 * loaded.n_params
        assert summary["dtype"] == "float32" and summary["device"] == "cpu"


def test_loaded_model_is_frozen_eval_sdpa(tiny_loaded):
    for loaded in tiny_loaded.values():
        assert not loaded.model.training
        assert not any(p.requires_grad for p in loaded.model.parameters())
        assert loaded.model.config._attn_implementation == "sdpa"
    assert tiny_loaded["gpt2"].max_positions == 64
    assert tiny_loaded["bart"].n_encoder_layers == 2 and tiny_loaded["gpt2"].n_encoder_layers == 0


def test_decoder_without_pad_token_pads_with_eos(tiny_loaded):
    tokenizer = tiny_loaded["gpt2"].tokenizer
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"


def test_bfloat16_load_converts_weights(tiny_model_dirs):
    loaded = load_model(str(tiny_model_dirs["llama"]), device="cpu", dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16
    assert next(loaded.model.parameters()).dtype == torch.bfloat16


def test_empty_spec_is_refused():
    with pytest.raises(StmemError, match="Enter a model"):
        load_model("   ")


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(StmemError, match="config.json"):
        load_model(str(tmp_path))


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(StmemError, match="No model folder"):
        load_model(str(tmp_path / "not" / "here"))


def test_unknown_bundled_model_is_refused():
    with pytest.raises(StmemError, match="no bundled model"):
        load_model("bundled:no-such-model")


def test_corrupt_safetensors_gives_a_clear_message(tiny_model_dirs, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_dirs["gpt2"], folder)
    (folder / "model.safetensors").write_bytes(b"\x00garbage bytes, not a safetensors file" * 10)
    with pytest.raises(StmemError, match="damaged"):
        load_model(str(folder))


def test_pickled_weights_only_are_refused(tiny_model_dirs, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dirs["gpt2"], folder)
    (folder / "model.safetensors").unlink()
    torch.save({"weight": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(StmemError, match="only safetensors"):
        load_model(str(folder))


def test_unknown_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(StmemError, match="Could not reach the Hugging Face Hub"):
        load_model("nobody-here/no-such-model-xyz")
    assert time.monotonic() - started < 2.0


def test_unreachable_hub_fails_within_seconds(monkeypatch):
    # online mode, but the endpoint is a closed local port: the reachability probe must say so
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(StmemError, match="offline or no network"):
        load_model("nobody-here/no-such-model-xyz")
    assert time.monotonic() - started < 5.0


def test_invalid_hub_id_is_refused():
    with pytest.raises(StmemError, match="neither a local folder nor a valid"):
        load_model("not a model id!")


def test_model_without_attention_is_refused(tiny_model_dirs, tmp_path):
    torch.manual_seed(0)
    config = MambaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, state_size=4)
    MambaForCausalLM(config).save_pretrained(tmp_path)
    shutil.copy(tiny_model_dirs["bert"] / "tokenizer.json", tmp_path)
    with pytest.raises(StmemError, match="has no attention layers to show"):
        load_model(str(tmp_path))
