"""Capture attention weights on purpose, only for the layers being viewed.

In transformers 5 the default attention implementation (sdpa) returns no weights. This module
registers one more implementation, ``"stmem_capture"``, with ``transformers.AttentionInterface``
(and the matching mask builder with ``AttentionMaskInterface``, so masks are built exactly as
for sdpa). While a capture is active, attention modules of the requested layers compute

    e = (Q K^T) * scaling + mask,    weights = softmax(e) in float32,    output = weights V

and hand ``weights`` (and ``e``) to a callback; every other module calls the stock sdpa
function, so the fast kernel is kept where nothing is looked at. Modules are told apart by
``id(module)``, mapped beforehand from ``model.named_modules()`` to a ``(stack, layer)`` pair:
stack ``"self"`` for decoder-only and encoder models, ``"encoder"``, ``"decoder"`` or
``"cross"`` for encoder-decoder models.

Models whose attention does not route through the interface are detected (a requested layer
produced no weights) and run once more with the eager implementation and
``output_attentions=True``; those captures carry weights only and say so in ``note``.

Tokens are returned as readable strings: byte-level BPE symbols are decoded back to text (bytes
that are not valid UTF-8 on their own appear as ``\\xNN``), SentencePiece's ``▁`` becomes a
space, then leading and trailing spaces are shown as ``␣``, newlines as ``↵`` and tabs as
``⇥``. The text is never HTML-escaped here; that is the renderer's job.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from stmem_viz import StmemError
from stmem_viz.models.hf import LoadedModel, ModelKind

log = logging.getLogger(__name__)

CAPTURE_IMPLEMENTATION = "stmem_capture"
CROSS_ATTENTION_NAMES = ("encoder_attn", "crossattention", "encdecattention", "cross_attn")
EAGER_NOTE = (
    "This model does not route attention through transformers' AttentionInterface, so the "
    "weights come from its eager implementation and raw scores are not available."
)

# (stack, layer, weights [B, H, q, k] float32, scores [B, H, q, k] float32 or None)
AttentionCallback = Callable[[str, int, torch.Tensor, "torch.Tensor | None"], None]


@dataclass
class AttentionCapture:
    """Attention of one text through one model.

    ``weights`` and ``scores`` map ``(stack, layer)`` to float32 arrays ``[heads, q, k]``.
    For encoder-decoder models ``tokens`` are the source (encoder) tokens and
    ``target_tokens`` the decoder input; decoder self-attention is ``[H, target, target]`` and
    cross-attention ``[H, target, source]``. ``special`` flags BOS/CLS/SEP/EOS/pad/mask tokens
    (the unknown token stands for real text and is not flagged). Scores are the logits the
    softmax saw, with masked positions set to ``-inf``; ``None`` when not requested or not
    available (see ``note``).
    """

    kind: ModelKind
    tokens: list[str]
    target_tokens: list[str] | None
    weights: dict[tuple[str, int], np.ndarray]
    scores: dict[tuple[str, int], np.ndarray] | None
    special: np.ndarray
    target_special: np.ndarray | None
    n_input_tokens: int
    truncated: bool
    note: str | None = None


@dataclass
class AttentionRun:
    """What ``run_with_attention`` returns: the model output and how weights were obtained."""

    outputs: Any
    captured: set[tuple[str, int]] = field(default_factory=set)
    note: str | None = None


@dataclass
class _Session:
    targets: dict[int, tuple[str, int]]
    on_attention: AttentionCallback
    with_scores: bool
    stock: Callable
    seen: set[tuple[str, int]] = field(default_factory=set)
    stock_calls: int = 0


_lock = threading.RLock()
_local = threading.local()


def _active_session() -> _Session | None:
    return getattr(_local, "session", None)


def capture_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ``"stmem_capture"`` attention function (same contract as sdpa's).

    Args:
        module: the attention module calling.
        query: ``[B, H, q, d]``.
        key: ``[B, H_kv, k, d]``.
        value: ``[B, H_kv, k, d_v]``.
        attention_mask: bool ``[B, 1, q, k]`` (True = attend), additive float mask, or None
            (then ``is_causal`` semantics apply, as in sdpa).
        scaling: score scale; ``d ** -0.5`` when None.
        dropout: ignored for captured modules (models are in eval mode).

    Returns:
        ``(output [B, q, H, d_v], weights [B, H, q, k] or None)``.
    """
    session = _active_session()
    target = None if session is None else session.targets.get(id(module))
    if target is None:
        stock = sdpa_attention_forward if session is None else session.stock
        if session is not None:
            session.stock_calls += 1
        return stock(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )

    scores = attention_scores(module, query, key, attention_mask, scaling, **kwargs)
    weights = softmax_with_sinks(scores, kwargs.get("s_aux"))
    n_rep = query.shape[1] // value.shape[1]
    # [B, H, q, k] @ [B, H, k, d_v] -> [B, H, q, d_v] -> [B, q, H, d_v]
    output = torch.matmul(weights, repeat_kv(value, n_rep).float()).to(query.dtype)
    output = output.transpose(1, 2).contiguous()

    session.seen.add(target)
    session.on_attention(target[0], target[1], weights, scores if session.with_scores else None)
    return output, weights.to(query.dtype)


def attention_scores(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    **kwargs,
) -> torch.Tensor:
    """Pre-softmax logits ``[B, H, q, k]`` in float32, masked positions set to ``-inf``.

    Reproduces the masking of ``sdpa_attention_forward`` in transformers: a bool mask keeps
    True entries, a float mask is added, and without a mask a causal module (``is_causal``
    kwarg, else ``module.is_causal``, default True) with more than one query uses an upper-left
    aligned causal mask. Softcapping (``softcap``) and additive ``position_bias`` are applied
    the way the eager implementations apply them.
    """
    q_len, k_len = query.shape[2], key.shape[2]
    n_rep = query.shape[1] // key.shape[1]
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling

    # raw dot products, float32
    scores = torch.matmul(query.float(), repeat_kv(key, n_rep).float().transpose(-1, -2)) * scale
    softcap = kwargs.get("softcap")
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    position_bias = kwargs.get("position_bias")
    if position_bias is not None:
        scores = scores + position_bias[..., :k_len].float()

    # which entries may be attended
    allowed = None
    if attention_mask is None:
        is_causal = kwargs.get("is_causal")
        is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
        if q_len > 1 and is_causal:
            positions = torch.arange(max(q_len, k_len), device=query.device)
            allowed = positions[:q_len, None] >= positions[None, :k_len]
    elif attention_mask.dtype == torch.bool:
        allowed = attention_mask[..., :k_len]
    else:
        mask = attention_mask[..., :k_len]
        scores = scores + mask.float()
        allowed = mask > torch.finfo(mask.dtype).min / 2
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores


def softmax_with_sinks(scores: torch.Tensor, sinks: torch.Tensor | None = None) -> torch.Tensor:
    """Row softmax of ``scores [B, H, q, k]`` honouring ``-inf``; fully masked rows give zeros.

    ``sinks`` (one learned logit per head, as in models with attention sinks) joins each row's
    normaliser without a key of its own, so such rows sum to less than one.
    """
    if sinks is None:
        weights = torch.softmax(scores, dim=-1)
    else:
        sink = sinks.float().reshape(1, -1, 1, 1).expand(*scores.shape[:-1], 1)
        weights = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]
    return torch.nan_to_num(weights, nan=0.0)


AttentionInterface.register(CAPTURE_IMPLEMENTATION, capture_attention_forward)
AttentionMaskInterface.register(CAPTURE_IMPLEMENTATION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def stacks_for(kind: ModelKind) -> tuple[str, ...]:
    """The attention stacks a model of ``kind`` has."""
    return ("encoder", "decoder", "cross") if kind == "encoder-decoder" else ("self",)


def layer_count(loaded: LoadedModel, stack: str) -> int:
    """Number of layers in ``stack`` of ``loaded``."""
    return loaded.n_encoder_layers if stack == "encoder" else loaded.n_layers


def module_positions(loaded: LoadedModel) -> dict[int, tuple[str, int]]:
    """Map ``id(module)`` to ``(stack, layer)`` for every module inside a numbered layer.

    The layer is the first integer in the module path (``model.layers.3.self_attn`` -> 3;
    ``decoder.block.1.layer.2.EncDecAttention`` -> 1). Modules whose name is one of
    ``CROSS_ATTENTION_NAMES`` are cross-attention; otherwise the stack is ``"encoder"`` or
    ``"decoder"`` by the path for encoder-decoder models, ``"self"`` for the others.
    """
    positions = {}
    for name, module in loaded.model.named_modules():
        parts = name.split(".")
        index = next((int(p) for p in parts if p.isdigit()), None)
        if index is None:
            continue
        if loaded.kind != "encoder-decoder":
            stack = "self"
        elif any(p.lower() in CROSS_ATTENTION_NAMES for p in parts):
            stack = "cross"
        elif "encoder" in parts or any(p.endswith("encoder") for p in parts):
            stack = "encoder"
        else:
            stack = "decoder"
        positions[id(module)] = (stack, index)
    return positions


def _requested(loaded: LoadedModel, layers, stacks) -> set[tuple[str, int]]:
    """The ``(stack, layer)`` pairs to capture, checked against the model."""
    known = stacks_for(loaded.kind)
    chosen = known if stacks is None else tuple(stacks)
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise StmemError(f"This {loaded.kind} model has no stack {unknown}; choose from {known}.")
    wanted = None if layers is None else {int(layer) for layer in layers}
    pairs = set()
    for stack in chosen:
        count = layer_count(loaded, stack)
        if wanted is not None and any(not 0 <= layer < count for layer in wanted):
            raise StmemError(f"Layers must lie in 0..{count - 1} for the {stack} stack.")
        pairs |= {(stack, layer) for layer in range(count) if wanted is None or layer in wanted}
    return pairs


@contextlib.contextmanager
def attention_capture(
    loaded: LoadedModel,
    requested: set[tuple[str, int]],
    on_attention: AttentionCallback,
    with_scores: bool = True,
) -> Iterator[_Session]:
    """Switch ``loaded.model`` to ``"stmem_capture"`` for the block, then restore it.

    One capture runs at a time (a process-wide lock, as the model's config is shared); other
    threads that run the model meanwhile go through the stock function.
    """
    model = loaded.model
    positions = module_positions(loaded)
    targets = {key: pos for key, pos in positions.items() if pos in requested}
    with _lock:
        configs = _configs(model)
        previous = {id(c): c._attn_implementation_internal for c in configs}
        # the masks are built as for sdpa, so uncaptured modules run sdpa whatever was set before
        stock = AttentionInterface._global_mapping.get("sdpa", sdpa_attention_forward)
        session = _Session(targets, on_attention, with_scores, stock)
        try:
            model.set_attn_implementation(CAPTURE_IMPLEMENTATION)
            _local.session = session
            yield session
        finally:
            _local.session = None
            for config in configs:
                config._attn_implementation_internal = previous[id(config)]


@contextlib.contextmanager
def _eager(model: PreTrainedModel) -> Iterator[None]:
    with _lock:
        configs = _configs(model)
        previous = {id(c): c._attn_implementation_internal for c in configs}
        try:
            if _routes_through_interface(model):
                model.set_attn_implementation("eager")
            yield
        finally:
            for config in configs:
                config._attn_implementation_internal = previous[id(config)]


def _configs(model: PreTrainedModel) -> list:
    """The distinct configs of the model and its sub-models."""
    found = {}
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            found.setdefault(id(module.config), module.config)
            for key in getattr(module.config, "sub_configs", {}) or {}:
                sub = getattr(module.config, key, None)
                if sub is not None:
                    found.setdefault(id(sub), sub)
    return list(found.values())


def run_with_attention(
    loaded: LoadedModel,
    inputs: dict[str, torch.Tensor],
    on_attention: AttentionCallback,
    layers: Iterable[int] | None = None,
    stacks: Iterable[str] | None = None,
    with_scores: bool = True,
) -> AttentionRun:
    """Run the model once, streaming each captured attention matrix to ``on_attention``.

    Args:
        loaded: the model.
        inputs: model inputs as from ``tokenize_for`` (``input_ids [B, T]``, ...).
        on_attention: called as ``on_attention(stack, layer, weights, scores)`` with float32
            tensors ``[B, H, q, k]`` (scores None when ``with_scores`` is False or unavailable),
            once per captured module, in forward order. Reduce them there to avoid storing
            every matrix.
        layers: layer indices to capture (all when None), applied to every chosen stack.
        stacks: stacks to capture (all of the model's when None).
        with_scores: also pass the pre-softmax scores.

    Returns:
        The model outputs, the pairs captured, and a note when the eager fallback was used.
    """
    requested = _requested(loaded, layers, stacks)
    inputs = {k: v.to(loaded.device) for k, v in inputs.items()}
    outputs, seen = None, set()
    with torch.inference_mode():
        if _routes_through_interface(loaded.model):
            with attention_capture(loaded, requested, on_attention, with_scores) as session:
                outputs = loaded.model(**inputs, **_forward_flags(loaded))
            seen = set(session.seen)
        missing = requested - seen
        if not missing:
            return AttentionRun(outputs, seen)
        log.info("%d attention modules bypassed the interface; using eager", len(missing))
        with _eager(loaded.model):
            eager_outputs = loaded.model(**inputs, **_forward_flags(loaded), output_attentions=True)
    found = _eager_attentions(loaded, eager_outputs)
    for stack, layer in sorted(missing):
        weights = found.get((stack, layer))
        if weights is None:
            raise StmemError(
                f"{loaded.spec} did not return attention weights for {stack} layer {layer}; "
                "this architecture cannot be shown."
            )
        on_attention(stack, layer, weights.float(), None)
    return AttentionRun(eager_outputs if outputs is None else outputs, seen | missing, EAGER_NOTE)


def _routes_through_interface(model: PreTrainedModel) -> bool:
    """Whether the model picks its attention function by name from ``AttentionInterface``."""
    check = getattr(model, "_can_set_attn_implementation", None)
    return True if check is None else bool(check())


def _forward_flags(loaded: LoadedModel) -> dict[str, Any]:
    return {"use_cache": False} if loaded.kind != "encoder" else {}


def _eager_attentions(loaded: LoadedModel, outputs) -> dict[tuple[str, int], torch.Tensor]:
    if loaded.kind == "encoder-decoder":
        groups = {
            "encoder": getattr(outputs, "encoder_attentions", None),
            "decoder": getattr(outputs, "decoder_attentions", None),
            "cross": getattr(outputs, "cross_attentions", None),
        }
    else:
        groups = {"self": getattr(outputs, "attentions", None)}
    found = {}
    for stack, tensors in groups.items():
        for layer, weights in enumerate(tensors or ()):
            if isinstance(weights, torch.Tensor):
                found[(stack, layer)] = weights
    return found


def tokenize_for(
    loaded: LoadedModel, text: str, target: str | None = None, max_tokens: int = 512
) -> tuple[dict[str, torch.Tensor], list[str], list[str] | None, int, bool]:
    """Tokenize ``text`` (and ``target``) into model inputs of batch size 1.

    The token limit is ``max_tokens``, lowered to the model's context length when it has one.
    Encoder-decoder models read ``text`` in the encoder; the decoder reads ``target`` shifted
    right behind the decoder start token, as in training (teacher forcing). Without a target
    the decoder reads the source text itself, so the view shows the model reconstructing its
    input, which is what denoising models such as BART were trained to do.

    Returns:
        ``(inputs, tokens, target_tokens, n_input_tokens, truncated)``: inputs hold
        ``input_ids [1, T]`` and ``attention_mask [1, T]`` (plus ``decoder_input_ids [1, S]``
        for encoder-decoder models); ``n_input_tokens`` counts the source tokens before
        truncation.

    Raises:
        StmemError: empty text or a limit below one token.
    """
    if not text or not text.strip():
        raise StmemError("Enter some text to see where the model's attention goes.")
    if max_tokens < 1:
        raise StmemError("The token limit must be at least 1.")
    tokenizer = loaded.tokenizer
    limit = max_tokens if loaded.max_positions is None else min(max_tokens, loaded.max_positions)

    n_input_tokens = len(tokenizer(text)["input_ids"])
    encoded = tokenizer(text, truncation=True, max_length=limit, return_tensors="pt")
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    if "token_type_ids" in encoded and loaded.kind == "encoder":
        inputs["token_type_ids"] = encoded["token_type_ids"]
    tokens = readable_tokens(tokenizer, inputs["input_ids"][0].tolist())

    target_tokens = None
    if loaded.kind == "encoder-decoder":
        labels = tokenizer(text_target=target or text, truncation=True, max_length=limit)
        start = _decoder_start_id(loaded)
        decoder_ids = [start] + labels["input_ids"][:-1]
        inputs["decoder_input_ids"] = torch.tensor([decoder_ids])
        target_tokens = readable_tokens(tokenizer, decoder_ids)
    return inputs, tokens, target_tokens, n_input_tokens, n_input_tokens > limit


def _decoder_start_id(loaded: LoadedModel) -> int:
    configs = (loaded.model.config, getattr(loaded.model, "generation_config", None))
    for config in configs:
        value = getattr(config, "decoder_start_token_id", None)
        if isinstance(value, int):
            return value
    tokenizer = loaded.tokenizer
    for value in (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id):
        if isinstance(value, int):
            return value
    raise StmemError(f"{loaded.spec} defines no decoder start token; give its config one.")


def capture_attention(
    loaded: LoadedModel,
    text: str,
    target: str | None = None,
    layers: Iterable[int] | None = None,
    stacks: Iterable[str] | None = None,
    max_tokens: int = 512,
    with_scores: bool = True,
) -> AttentionCapture:
    """Attention weights (and scores) of ``text`` for the chosen layers and stacks.

    Args:
        loaded: the model.
        text: the input text (the source text for encoder-decoder models).
        target: decoder text for encoder-decoder models (see ``tokenize_for``).
        layers: layer indices to capture, all when None.
        stacks: stacks to capture (``"self"``; or ``"encoder"``, ``"decoder"``, ``"cross"``).
        max_tokens: longest input kept; longer text is cut and ``truncated`` set.
        with_scores: also keep the pre-softmax scores.

    Returns:
        The capture, with arrays ``[heads, q, k]`` per ``(stack, layer)``.

    Raises:
        StmemError: empty text, unknown stack or out-of-range layer.
    """
    inputs, tokens, target_tokens, n_input_tokens, truncated = tokenize_for(
        loaded, text, target, max_tokens
    )
    weights: dict[tuple[str, int], np.ndarray] = {}
    scores: dict[tuple[str, int], np.ndarray] = {}

    def keep(stack: str, layer: int, w: torch.Tensor, s: torch.Tensor | None) -> None:
        weights[(stack, layer)] = w[0].float().cpu().numpy()
        if s is not None:
            scores[(stack, layer)] = s[0].float().cpu().numpy()

    run = run_with_attention(loaded, inputs, keep, layers, stacks, with_scores)
    special_ids = set(loaded.tokenizer.all_special_ids) - {loaded.tokenizer.unk_token_id}
    target_special = None
    if "decoder_input_ids" in inputs:
        target_special = np.array(
            [i in special_ids for i in inputs["decoder_input_ids"][0].tolist()], dtype=bool
        )
    return AttentionCapture(
        kind=loaded.kind,
        tokens=tokens,
        target_tokens=target_tokens,
        weights=weights,
        scores=scores if with_scores and scores else None,
        special=np.array([i in special_ids for i in inputs["input_ids"][0].tolist()], bool),
        target_special=target_special,
        n_input_tokens=n_input_tokens,
        truncated=truncated,
        note=run.note,
    )


def readable_tokens(tokenizer, ids: list[int]) -> list[str]:
    """Token strings a person can read (see the module docstring for the conventions)."""
    raw = tokenizer.convert_ids_to_tokens(ids)
    special = set(tokenizer.all_special_tokens)
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    decoder_text = repr(decoder) if decoder is not None else ""
    byte_level = "ByteLevel" in decoder_text
    metaspace = "Metaspace" in decoder_text or "▁" in decoder_text
    added = set(getattr(tokenizer, "get_added_vocab", dict)())
    out = []
    for token in raw:
        token = "" if token is None else str(token)
        if token in special:
            out.append(token)
            continue
        if byte_level and token not in added:
            token = _from_byte_level(token)
        elif metaspace:
            token = token.replace("▁", " ")
        out.append(_visible_whitespace(token))
    return out


def _visible_whitespace(token: str) -> str:
    token = token.replace("\n", "↵").replace("\r", "␍").replace("\t", "⇥")
    if not token.strip(" "):
        return "␣" * len(token)
    body = token.strip(" ")
    lead = len(token) - len(token.lstrip(" "))
    trail = len(token) - len(token.rstrip(" "))
    return "␣" * lead + body + "␣" * trail


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-unicode table (Radford et al., 2019)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


_BYTE_DECODER = _byte_decoder()


def _from_byte_level(token: str) -> str:
    data = bytearray()
    for char in token:
        if char in _BYTE_DECODER:
            data.append(_BYTE_DECODER[char])
        else:
            data.extend(char.encode("utf-8"))
    return bytes(data).decode("utf-8", errors="backslashreplace")
