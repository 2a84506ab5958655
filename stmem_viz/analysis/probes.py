"""Score many short continuations of one long prefix with a causal language model.

Forgetting experiments ask the same model the same question after many prefixes of one text:
after 0, 1, 2, ... 128 distractor sentences, or after a gap of g filler tokens. Every such probe
reads ``prefix[:cut] + probe_tokens``. Running each probe as its own forward pass repeats the
prefix work once per grid point. :func:`score_probes` runs each prefix once with a key-value
cache, then evaluates all of its probes in one batched forward with an attention mask that hides
the cache positions at and after each probe's cut and explicit ``position_ids`` that continue
from the cut. The result equals the full forward of ``prefix[:cut] + probe_tokens`` up to
floating-point rounding (:func:`score_probes_full` computes it that way, for checks and
benchmarks).

Teacher-forced scoring follows the passkey retrieval protocol of Mohtashami & Jaggi (2023),
"Landmark Attention: Random-Access Infinite Context Length for Transformers": the answer is
never sampled; each answer token's log-probability is read under the true previous tokens, and
exact match means every answer token is the arg-max of its distribution.

Two ways of reading probes from the cache: *packed* (the default with sdpa and eager
attention) puts all probes of one prefix in a single row after the cache, with a 4-D mask that
lets each probe see only its cut of the prefix and itself, so the cache is never copied;
*expanded* gives each probe its own row, a copy of the cache and a 2-D mask (for attention
implementations that take no custom 4-D mask). The cache is reused only for models whose cache
is a plain ``DynamicCache`` of full-attention layers (GPT-2, Llama, Qwen, ...). Models with
sliding-window or recurrent layers fall back to batched full forwards, which give the same
numbers more slowly.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)

IGNORE = -100
"""A target that is not scored (the probe position predicts nothing we measure)."""

MEMORY_BUDGET_BYTES = 512 * 2**20
"""Upper bound on the logits plus copied cache held at once while scoring a chunk of rows."""


@dataclass(frozen=True)
class Probe:
    """One continuation of a shared prefix.

    Attributes:
        cut: how many prefix tokens the probe sees (``prefix[:cut]``), at least 1.
        tokens: token ids read after the cut, at least one.
        targets: for each of ``tokens``, the id the model should predict next, or
            :data:`IGNORE`.
    """

    cut: int
    tokens: tuple[int, ...]
    targets: tuple[int, ...]


@dataclass
class ProbeScores:
    """Teacher-forced scores of a flat list of probes (prefix-major, in the order given).

    Attributes:
        logprob: ``[R, P]`` float64 log-probability of each target (NaN where not scored).
        match: ``[R, P]`` bool, target is the arg-max (False where not scored).
        scored: ``[R, P]`` bool, which entries hold a target.
    """

    logprob: np.ndarray
    match: np.ndarray
    scored: np.ndarray

    def total_logprob(self) -> np.ndarray:
        """``[R]`` summed log-probability of every scored target of each row."""
        return np.where(self.scored, self.logprob, 0.0).sum(axis=1)

    def all_match(self) -> np.ndarray:
        """``[R]`` whether every scored target of a row is the arg-max."""
        return np.where(self.scored, self.match, True).all(axis=1)

    def mean_nll(self) -> np.ndarray:
        """``[R]`` mean negative log-probability over the scored targets of each row."""
        count = np.maximum(self.scored.sum(axis=1), 1)
        return -self.total_logprob() / count


ProgressFn = Callable[[int, int], None]
"""Called with (rows done, rows in total) after each chunk."""


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _cache_keyword(model: torch.nn.Module) -> str:
    """``cache`` in transformers 5, ``past_key_values`` in models that still use that name."""
    names = inspect.signature(model.forward).parameters
    return "cache" if "cache" in names else "past_key_values"


def _output_cache(output):
    return getattr(output, "cache", None) or getattr(output, "past_key_values", None)


def _reusable(cache) -> bool:
    """A cache we know how to copy row by row: full-attention ``DynamicLayer`` tensors only."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    if not isinstance(cache, DynamicCache):
        return False
    return all(type(layer) is DynamicLayer and layer.keys is not None for layer in cache.layers)


def _pad_rows(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)  # [R, W]
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
    return out


def _score_logits(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-probability and arg-max match of ``targets [R, P]`` under ``logits [R, P, V]``."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)  # [R, P, V]
    scored = targets != IGNORE
    safe = targets.clamp(min=0)
    chosen = logprobs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # [R, P]
    match = logits.argmax(-1) == safe
    chosen = torch.where(scored, chosen, torch.full_like(chosen, float("nan")))
    return (
        chosen.double().cpu().numpy(),
        (match & scored).cpu().numpy(),
        scored.cpu().numpy(),
    )


def _check(prefixes: Sequence[Sequence[int]], probes: Sequence[Sequence[Probe]]) -> None:
    assert len(prefixes) == len(probes), "one list of probes per prefix"
    for prefix, group in zip(prefixes, probes, strict=True):
        for probe in group:
            assert 1 <= probe.cut <= len(prefix), "a probe sees at least one prefix token"
            assert probe.tokens and len(probe.tokens) == len(probe.targets)


def _rows_per_chunk(bytes_per_row: int) -> int:
    return max(1, MEMORY_BUDGET_BYTES // max(bytes_per_row, 1))


PACKED_ATTENTION = ("sdpa", "eager")
"""Attention implementations that take a custom 4-D mask, which packed probes need."""


def _groups(prefixes, probes, vocab: int, prefix_batch: int) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges of prefixes run together, small enough for the memory budget."""
    ranges, start = [], 0
    while start < len(prefixes):
        stop, scored = start, 0
        while stop < len(prefixes) and stop - start < prefix_batch:
            more = sum(len(q.tokens) for q in probes[stop])
            if stop > start and (scored + more) * vocab * 8 > MEMORY_BUDGET_BYTES:
                break
            scored += more
            stop += 1
        ranges.append((start, stop))
        start = stop
    return ranges


@torch.no_grad()
def score_probes(
    model: torch.nn.Module,
    prefixes: Sequence[Sequence[int]],
    probes: Sequence[Sequence[Probe]],
    pad_id: int = 0,
    prefix_batch: int = 8,
    progress: ProgressFn | None = None,
    packed: bool | None = None,
) -> ProbeScores:
    """Score every probe of every prefix, running each prefix once (key-value cache reuse).

    Args:
        model: a Hugging Face causal LM in eval mode.
        prefixes: token ids of each shared prefix (special tokens included).
        probes: for each prefix, the probes that continue it.
        pad_id: a valid token id used as padding (padded positions are never attended to).
        prefix_batch: prefixes run together in one cached forward.
        progress: called with (probes done, probes in total) after each group of prefixes.
        packed: True: all probes of a prefix share one row after its cache, separated by a
            4-D attention mask (no copy of the cache). False: one row per probe, each with a
            copy of its prefix's cache and a 2-D mask. None: packed when the model's attention
            implementation takes 4-D masks (sdpa, eager).

    Returns:
        Scores of all probes, prefix-major.
    """
    _check(prefixes, probes)
    device = _device(model)
    keyword = _cache_keyword(model)
    if packed is None:
        packed = getattr(model.config, "_attn_implementation", "") in PACKED_ATTENTION
    vocab = model.config.get_text_config(decoder=True).vocab_size
    total = sum(len(g) for g in probes)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    done = 0
    for start, stop in _groups(prefixes, probes, vocab, prefix_batch):
        group_prefixes, group_probes = prefixes[start:stop], probes[start:stop]

        # one cached forward over the prefixes, each cut to the longest cut it needs
        needed = [max((p.cut for p in g), default=1) for g in group_probes]
        ids = _pad_rows([p[:n] for p, n in zip(group_prefixes, needed, strict=True)], pad_id)
        output = model(input_ids=ids.to(device), use_cache=True, logits_to_keep=1)
        cache = _output_cache(output)
        if not _reusable(cache):
            log.info("model cache is not a full-attention DynamicCache; using full forwards")
            flat = [(p, q) for p, g in zip(group_prefixes, group_probes, strict=True) for q in g]
            parts.append(_full_rows(model, flat, pad_id))
        elif packed:
            parts.append(_packed_rows(model, keyword, cache, ids.shape[1], group_probes, pad_id))
        else:
            parts += _expanded_rows(model, keyword, cache, ids.shape[1], group_probes, pad_id)
        done += sum(len(g) for g in group_probes)
        if progress is not None:
            progress(done, total)
    return _concat(parts)


def _packed_rows(model, keyword, cache, width, group_probes, pad_id):
    """All probes of each prefix in one row after its cache, kept apart by a 4-D mask.

    Row ``b`` holds the probes of prefix ``b`` one after another. A probe token sees the cache
    positions before its probe's cut and the earlier tokens of its own probe, never another
    probe; its ``position_ids`` continue from its cut, as in a full forward of
    ``prefix[:cut] + tokens``.

    Returns:
        ``(logprob, match, scored)``, each ``[R, P]`` over the group's probes in order.
    """
    device = _device(model)
    dtype = next(model.parameters()).dtype
    n_rows = len(group_probes)
    length = max(sum(len(q.tokens) for q in g) for g in group_probes)
    tokens = torch.full((n_rows, length), pad_id, dtype=torch.long)  # [B, Q]
    positions = torch.zeros((n_rows, length), dtype=torch.long)  # [B, Q]
    allowed = torch.zeros((n_rows, length, width + length), dtype=torch.bool)  # [B, Q, T + Q]
    targets = torch.full((n_rows, length), IGNORE, dtype=torch.long)  # [B, Q]
    spans: list[tuple[int, int, int]] = []  # (row, offset, probe length) of every probe
    for b, group in enumerate(group_probes):
        offset = 0
        for probe in group:
            n = len(probe.tokens)
            at = slice(offset, offset + n)
            tokens[b, at] = torch.tensor(probe.tokens)
            targets[b, at] = torch.tensor(probe.targets)
            positions[b, at] = probe.cut + torch.arange(n)
            allowed[b, at, : probe.cut] = True
            own = torch.ones(n, n, dtype=torch.bool).tril()
            allowed[b, at, width + offset : width + offset + n] = own
            spans.append((b, offset, n))
            offset += n
        allowed[b, offset:, width + offset :] = torch.eye(length - offset, dtype=torch.bool)
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)

    # logits only where some row scores a target
    keep = torch.nonzero((targets != IGNORE).any(0)).flatten()  # [K]
    logits = model(
        input_ids=tokens.to(device),
        attention_mask=mask[:, None].to(device),  # [B, 1, Q, T + Q]
        position_ids=positions.to(device),
        use_cache=True,
        logits_to_keep=keep.to(device),
        **{keyword: cache},
    ).logits  # [B, K, V]
    logprob, match, scored = _score_logits(logits, targets[:, keep].to(device))  # [B, K]

    # back to one row per probe
    column = {int(k): i for i, k in enumerate(keep)}
    widest = max(n for _, _, n in spans)
    out_logprob = np.full((len(spans), widest), np.nan)
    out_match = np.zeros((len(spans), widest), dtype=bool)
    out_scored = np.zeros((len(spans), widest), dtype=bool)
    for r, (b, offset, n) in enumerate(spans):
        for j in range(n):
            i = column.get(offset + j)
            if i is not None and scored[b, i]:
                out_logprob[r, j], out_match[r, j], out_scored[r, j] = (
                    logprob[b, i],
                    match[b, i],
                    True,
                )
    return out_logprob, out_match, out_scored


def _expanded_rows(model, keyword, cache, width, group_probes, pad_id) -> list[tuple]:
    """One row per probe, each with a copy of its prefix's cached keys and values."""
    device = _device(model)
    layers = [(layer.keys, layer.values) for layer in cache.layers]  # [B, H, T, hd] each
    rows = [(b, q) for b, g in enumerate(group_probes) for q in g]
    vocab = model.config.get_text_config(decoder=True).vocab_size
    probe_width = max(len(q.tokens) for _, q in rows)
    cache_row = sum(k[0].numel() * k.element_size() * 2 for k, _ in layers)
    step = _rows_per_chunk(cache_row + probe_width * vocab * 4 * 2)
    return [
        _cached_rows(model, keyword, layers, width, rows[i : i + step], pad_id, device)
        for i in range(0, len(rows), step)
    ]


def _cached_rows(model, keyword, layers, width, chunk, pad_id, device):
    """Score ``chunk`` [(prefix row in the cache, probe)] against copies of the cached rows."""
    from transformers import DynamicCache

    index = torch.tensor([b for b, _ in chunk], device=device)
    copied = DynamicCache(ddp_cache_data=[(k[index], v[index]) for k, v in layers])
    tokens = _pad_rows([q.tokens for _, q in chunk], pad_id).to(device)  # [R, P]
    targets = _pad_rows([q.targets for _, q in chunk], IGNORE).to(device)  # [R, P]
    n_rows, n_probe = tokens.shape
    cuts = torch.tensor([q.cut for _, q in chunk], device=device)  # [R]

    # cache positions before the cut stay visible; the probe sees itself causally
    visible = torch.arange(width, device=device)[None, :] < cuts[:, None]  # [R, T]
    mask = torch.cat([visible, torch.ones(n_rows, n_probe, dtype=torch.bool, device=device)], 1)
    positions = cuts[:, None] + torch.arange(n_probe, device=device)[None, :]  # [R, P]
    logits = model(
        input_ids=tokens,
        attention_mask=mask.long(),
        position_ids=positions,
        use_cache=True,
        **{keyword: copied},
    ).logits  # [R, P, V]
    return _score_logits(logits, targets)


def _full_rows(model, flat, pad_id, batch_size: int = 16):
    """Score (prefix, probe) pairs with full forwards of ``prefix[:cut] + tokens``.

    Returns:
        ``(logprob, match, scored)``, each ``[R, P]``.
    """
    device = _device(model)
    parts = []
    for start in range(0, len(flat), batch_size):
        chunk = flat[start : start + batch_size]
        sequences = [list(p[: q.cut]) + list(q.tokens) for p, q in chunk]
        ids = _pad_rows(sequences, pad_id).to(device)  # [R, T] right padded: causal, no mask
        logits = model(input_ids=ids).logits  # [R, T, V]
        n_probe = max(len(q.tokens) for _, q in chunk)
        gathered = torch.stack(
            [
                torch.nn.functional.pad(
                    logits[r, q.cut : q.cut + len(q.tokens)], (0, 0, 0, n_probe - len(q.tokens))
                )
                for r, (_, q) in enumerate(chunk)
            ]
        )  # [R, P, V]
        targets = _pad_rows([q.targets for _, q in chunk], IGNORE).to(device)
        parts.append(_score_logits(gathered, targets))
    scores = _concat(parts)
    return scores.logprob, scores.match, scores.scored


@torch.no_grad()
def score_probes_full(
    model: torch.nn.Module,
    prefixes: Sequence[Sequence[int]],
    probes: Sequence[Sequence[Probe]],
    pad_id: int = 0,
    batch_size: int = 1,
    progress: ProgressFn | None = None,
) -> ProbeScores:
    """The same scores as :func:`score_probes`, from one full forward per probe (or batch).

    Args:
        model: a Hugging Face causal LM in eval mode.
        prefixes: token ids of each shared prefix.
        probes: for each prefix, the probes that continue it.
        pad_id: a valid token id used as right padding.
        batch_size: probes run together (1: one forward per probe, the naive baseline).
        progress: called after each batch.
    """
    _check(prefixes, probes)
    flat = [(p, q) for p, g in zip(prefixes, probes, strict=True) for q in g]
    parts = []
    for start in range(0, len(flat), batch_size):
        parts.append(_full_rows(model, flat[start : start + batch_size], pad_id, batch_size))
        if progress is not None:
            progress(min(start + batch_size, len(flat)), len(flat))
    return _concat(parts)


def _concat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> ProbeScores:
    if not parts:
        empty = np.zeros((0, 0))
        return ProbeScores(empty, empty.astype(bool), empty.astype(bool))
    width = max(p[0].shape[1] for p in parts)

    def widen(array: np.ndarray, fill) -> np.ndarray:
        extra = width - array.shape[1]
        return np.pad(array, ((0, 0), (0, extra)), constant_values=fill) if extra else array

    return ProbeScores(
        logprob=np.concatenate([widen(p[0], np.nan) for p in parts]),
        match=np.concatenate([widen(p[1], False) for p in parts]),
        scored=np.concatenate([widen(p[2], False) for p in parts]),
    )


@torch.no_grad()
def token_nll(
    model: torch.nn.Module, sequences: Sequence[Sequence[int]], pad_id: int = 0, batch_size: int = 8
) -> np.ndarray:
    """Next-token negative log-likelihood at every position of each sequence.

    Args:
        model: a Hugging Face causal LM.
        sequences: token ids; entry ``t`` of the result scores token ``t + 1``.
        pad_id: right padding id.
        batch_size: sequences per forward.

    Returns:
        ``[n, T - 1]`` float64, ``T`` the longest sequence; NaN past each sequence's end.
    """
    device = _device(model)
    width = max(len(s) for s in sequences)
    out = np.full((len(sequences), max(width - 1, 0)), np.nan)
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        ids = _pad_rows(chunk, pad_id).to(device)  # [B, T]
        logits = model(input_ids=ids).logits[:, :-1]  # [B, T-1, V]
        logprobs = torch.log_softmax(logits.float(), -1)
        picked = logprobs.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # [B, T-1]
        values = (-picked).double().cpu().numpy()
        for i, sequence in enumerate(chunk):
            n = len(sequence) - 1
            out[start + i, :n] = values[i, :n]
    return out
