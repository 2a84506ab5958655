"""Tiny random-weight Hugging Face models with offline tokenizers, saved to folders for tests.

Four families cover the attention layouts the app must handle: GPT-2 (fused QKV, learned
positions, byte-level BPE tokenizer), Llama (rotary positions, grouped-query attention with two
key/value heads), BERT (bidirectional encoder with [CLS]/[SEP]) and BART (encoder, decoder and
cross-attention). Every model is built from a config with a fixed seed, saved with
``save_pretrained`` (safetensors) next to its tokenizer, and is small enough to run in
milliseconds on one CPU core.

Register this file as a pytest plugin (see ``tests/conftest.py``) to get the session fixtures
``tiny_model_dirs`` (family -> folder) and ``tiny_loaded`` (family -> ``LoadedModel``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

FAMILIES = ("gpt2", "llama", "bert", "bart")

# Weights drawn wider than the usual 0.02 so that attention is peaked, not nearly uniform:
# tests comparing weights then notice a wrong scale, mask or head order.
INIT_STD = 0.4

# A token that looks like markup: it must reach the renderer as literal text.
HTML_TOKEN = "<img src=x onerror=alert(1)>"

WORDS = (
    "the a cat dog sat on mat mary john sandra daniel went to moved travelled journeyed back "
    "kitchen garden office hallway bedroom bathroom where is apple milk football picked up got "
    "dropped left put down there then after that and was in of it . , ? ! ( ) 0 1 2 3 4 5 6 7 8 9"
).split()

CORPUS = [
    "the cat sat on the mat.",
    "Mary went to the kitchen. John moved to the garden.",
    "Where is Mary? Mary is in the kitchen.",
    "Sandra picked up the apple and travelled to the office.",
    "Daniel dropped the milk in the hallway, then went back to the bedroom.",
]


def _word_level(specials: list[str]) -> Tokenizer:
    """A lowercasing, whitespace-split WordLevel tokenizer over ``WORDS``; specials come first."""
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(specials)
    tokenizer.add_tokens([HTML_TOKEN])
    return tokenizer


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on ``CORPUS`` (about 300 tokens), GPT-2 style: no pad token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    tokenizer.add_tokens([HTML_TOKEN])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )


def llama_tokenizer() -> PreTrainedTokenizerFast:
    """WordLevel tokenizer that prepends <s>, as Llama tokenizers do."""
    tokenizer = _word_level(["<unk>", "<s>", "</s>", "<pad>"])
    tokenizer.model.unk_token = "<unk>"
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def bert_tokenizer() -> PreTrainedTokenizerFast:
    """WordLevel tokenizer with BERT's [CLS] ... [SEP] template."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = _word_level(specials)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def bart_tokenizer() -> PreTrainedTokenizerFast:
    """WordLevel tokenizer with BART's <s> ... </s> template."""
    tokenizer = _word_level(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="[UNK]",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def build_tiny_model(family: str) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """A random-weight model of ``family`` (seeded) and its tokenizer."""
    torch.manual_seed(0)
    if family == "gpt2":
        tokenizer = gpt2_tokenizer()
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=64,
            n_embd=32,
            n_layer=2,
            n_head=4,
            initializer_range=INIT_STD,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
    elif family == "llama":
        tokenizer = llama_tokenizer()
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            initializer_range=INIT_STD,
            max_position_embeddings=128,
            rope_theta=10000.0,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=3,
        )
        model = LlamaForCausalLM(config)
    elif family == "bert":
        tokenizer = bert_tokenizer()
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=128,
            initializer_range=INIT_STD,
            pad_token_id=0,
        )
        model = BertForMaskedLM(config)
    elif family == "bart":
        tokenizer = bart_tokenizer()
        config = BartConfig(
            vocab_size=len(tokenizer),
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            init_std=INIT_STD,
            max_position_embeddings=128,
            bos_token_id=0,
            pad_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=2,
            forced_eos_token_id=2,
        )
        model = BartForConditionalGeneration(config)
    else:
        raise ValueError(f"unknown tiny model family {family!r}")
    return model.eval(), tokenizer


def save_tiny_model(family: str, folder: Path) -> Path:
    """Build ``family`` and write model (safetensors) and tokenizer into ``folder``."""
    model, tokenizer = build_tiny_model(family)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders holding a saved tiny model of each family: ``{"gpt2": Path, ...}``."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: save_tiny_model(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dirs: dict[str, Path]) -> dict:
    """Each tiny model loaded through ``stmem_viz.models.hf.load_model`` on the CPU."""
    from stmem_viz.models.hf import load_model

    return {
        family: load_model(str(path), device="cpu", dtype="float32")
        for family, path in tiny_model_dirs.items()
    }
