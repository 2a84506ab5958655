"""Attention metrics: per-head summaries, induction scores, attention rollout, token hiding.

- Per-head summaries (entropy, mass on the first token, previous-token score, mean distance)
  describe where each head looks; heads that park their attention on the first token are the
  "attention sinks" of Xiao et al. (2023), "Efficient Streaming Language Models with Attention
  Sinks".
- Induction scores follow Olsson et al. (2022), "In-context Learning and Induction Heads": on a
  random token sequence repeated twice, an induction head attends from each token of the second
  copy to the token that followed the same token in the first copy.
- Attention rollout follows Abnar & Zuidema (2020), "Quantifying Attention Flow in
  Transformers": average the heads, mix in the residual connection as an identity, renormalise
  the rows and multiply the layers from the bottom up.

Metrics over a whole model are computed while the model runs (``run_with_attention``), one
layer at a time, so no more than one attention matrix is held at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from stmem_viz import StmemError
from stmem_viz.models.capture import run_with_attention, stacks_for, tokenize_for
from stmem_viz.models.hf import LoadedModel

METRIC_COLUMNS = ("entropy", "first_token_mass", "prev_token_score", "mean_distance")


def softmax_rows(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of ``scores [..., k]``; ``-inf`` entries get weight 0.

    Rows where every entry is ``-inf`` come out as zeros rather than NaN.
    """
    scores = np.asarray(scores, dtype=np.float64)
    peak = np.max(scores, axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    exp = np.exp(scores - peak)
    total = exp.sum(axis=-1, keepdims=True)
    return np.divide(exp, total, out=np.zeros_like(exp), where=total > 0)


def head_metrics_from_weights(weights: np.ndarray) -> dict[str, np.ndarray]:
    """Summaries of each head's attention pattern.

    Query ``i`` is taken to sit at key position ``i`` (true for self-attention over one
    sequence). For cross-attention, where queries and keys are different sequences, the
    previous-token score and mean distance compare positions across the two sequences.

    Args:
        weights: attention weights ``[H, q, k]``, rows summing to 1 (or 0 for empty rows).

    Returns:
        Arrays ``[H]``: ``entropy`` (mean row entropy, nats), ``first_token_mass`` (mean weight
        on key 0), ``prev_token_score`` (mean weight on key ``i-1`` for queries ``i >= 1``; NaN
        with a single query) and ``mean_distance`` (mean of ``sum_j w_ij |i - j|``).

    >>> m = head_metrics_from_weights(np.eye(3)[None])
    >>> float(m["entropy"][0]), float(m["mean_distance"][0])
    (0.0, 0.0)
    """
    weights = np.asarray(weights, dtype=np.float64)
    _, q, k = weights.shape

    # entropy of each row, 0 log 0 = 0
    logs = np.log(weights, out=np.zeros_like(weights), where=weights > 0)
    entropy = 0.0 - (weights * logs).sum(axis=-1).mean(axis=-1)  # 0.0 - x: no negative zero

    # weight on the first key and on the previous key
    first = weights[:, :, 0].mean(axis=-1)
    rows = np.arange(1, min(q, k + 1))
    prev = weights[:, rows, rows - 1].mean(axis=-1) if rows.size else np.full(len(weights), np.nan)

    # expected distance between query and attended key
    distance = np.abs(np.arange(q)[:, None] - np.arange(k)[None, :])
    mean_distance = (weights * distance).sum(axis=-1).mean(axis=-1)
    return {
        "entropy": entropy,
        "first_token_mass": first,
        "prev_token_score": prev,
        "mean_distance": mean_distance,
    }


def head_metrics(
    loaded: LoadedModel, text: str, target: str | None = None, max_tokens: int = 512
) -> pd.DataFrame:
    """``head_metrics_from_weights`` for every head of every layer and stack on ``text``.

    Returns:
        One row per head: ``stack, layer, head, entropy, first_token_mass, prev_token_score,
        mean_distance``, sorted by stack (model order), layer and head.

    Raises:
        StmemError: empty text (see ``tokenize_for``).
    """
    inputs, *_ = tokenize_for(loaded, text, target, max_tokens)
    rows: list[dict] = []

    def reduce(stack: str, layer: int, weights: torch.Tensor, scores) -> None:
        metrics = head_metrics_from_weights(weights[0].cpu().numpy())  # [H, q, k]
        for head in range(weights.shape[1]):
            row = {"stack": stack, "layer": layer, "head": head}
            row.update({name: float(values[head]) for name, values in metrics.items()})
            rows.append(row)

    run_with_attention(loaded, inputs, reduce, with_scores=False)
    return _sorted_frame(rows, loaded, list(METRIC_COLUMNS))


def induction_scores(
    loaded: LoadedModel, seq_len: int = 50, seed: int = 0, batch: int = 4
) -> pd.DataFrame:
    """Induction score of every head of a decoder model (Olsson et al., 2022).

    ``batch`` random sequences of ``seq_len`` tokens, drawn uniformly from the vocabulary
    without special tokens, are each repeated twice behind the BOS token (when the tokenizer
    has one). A head's score is its mean attention from each token of the second copy to the
    token right after that token's occurrence in the first copy. ``seq_len`` is lowered when
    the repeated sequence would exceed the model's context length.

    Returns:
        One row per head: ``stack, layer, head, induction`` with scores in [0, 1].

    Raises:
        StmemError: the model is not a decoder, or the arguments are out of range.
    """
    if loaded.kind != "decoder":
        raise StmemError(
            "Induction scores need a decoder (causal) model; "
            f"{loaded.spec} is an {loaded.kind} model."
        )
    if seq_len < 2 or batch < 1:
        raise StmemError("Induction scores need seq_len >= 2 and batch >= 1.")
    tokens, offset, seq_len = _induction_tokens(loaded, seq_len, seed, batch)  # [B, T]
    queries = torch.arange(offset + seq_len, offset + 2 * seq_len)
    keys = queries - seq_len + 1
    rows: list[dict] = []

    def reduce(stack: str, layer: int, weights: torch.Tensor, scores) -> None:
        # [B, H, q, k] -> [B, H, seq_len] -> [H]
        score = weights[:, :, queries, keys].mean(dim=(0, 2)).cpu().numpy()
        for head, value in enumerate(score):
            rows.append({"stack": stack, "layer": layer, "head": head, "induction": float(value)})

    inputs = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}
    run_with_attention(loaded, inputs, reduce, with_scores=False)
    return _sorted_frame(rows, loaded, ["induction"])


def _induction_tokens(
    loaded: LoadedModel, seq_len: int, seed: int, batch: int
) -> tuple[torch.Tensor, int, int]:
    """Token ids ``[B, offset + 2 * seq_len]`` (random halves repeated once), offset, seq_len.

    ``offset`` is 1 when a BOS token leads each row, else 0.
    """
    tokenizer = loaded.tokenizer
    vocab = min(len(tokenizer), getattr(loaded.model.config, "vocab_size", None) or len(tokenizer))
    excluded = set(tokenizer.all_special_ids)
    candidates = np.array([i for i in range(vocab) if i not in excluded])
    if candidates.size == 0:
        raise StmemError(f"{loaded.spec} has no ordinary tokens to build a test sequence from.")
    bos = tokenizer.bos_token_id
    offset = 0 if bos is None else 1
    if loaded.max_positions is not None:
        seq_len = max(2, min(seq_len, (loaded.max_positions - offset) // 2))

    rng = np.random.default_rng(seed)
    half = candidates[rng.integers(0, candidates.size, size=(batch, seq_len))]
    parts = [half, half] if bos is None else [np.full((batch, 1), bos), half, half]
    return torch.as_tensor(np.concatenate(parts, axis=1), dtype=torch.long), offset, seq_len


def _sorted_frame(rows: list[dict], loaded: LoadedModel, columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["stack", "layer", "head", *columns])
    order = {stack: i for i, stack in enumerate(stacks_for(loaded.kind))}
    frame = frame.sort_values(
        ["stack", "layer", "head"], key=lambda col: col.map(order) if col.name == "stack" else col
    )
    return frame.reset_index(drop=True)


def rollout(weights_by_layer: list[np.ndarray], residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020) through a stack of layers.

    Args:
        weights_by_layer: one ``[H, T, T]`` array per layer, bottom layer first.
        residual: weight of the identity (the residual stream) mixed into each layer.

    Returns:
        ``[T, T]``: row ``i`` says how much each input token flows into position ``i`` at the
        top of the stack; rows sum to 1.

    >>> rollout([np.eye(2)[None], np.eye(2)[None]]).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    if not weights_by_layer:
        raise ValueError("rollout needs at least one layer of weights")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must lie in [0, 1], got {residual}")
    flow = None
    for weights in weights_by_layer:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 3 or weights.shape[1] != weights.shape[2]:
            raise ValueError(f"each layer must be [H, T, T], got {weights.shape}")
        mixed = residual * np.eye(weights.shape[1]) + (1.0 - residual) * weights.mean(axis=0)
        total = mixed.sum(axis=-1, keepdims=True)
        mixed = np.divide(mixed, total, out=np.zeros_like(mixed), where=total > 0)
        flow = mixed if flow is None else mixed @ flow
    return flow


def hide_tokens(
    matrix: np.ndarray, hide_q: np.ndarray, hide_k: np.ndarray, renormalise: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop hidden query rows and key columns from ``matrix [..., q, k]``.

    Args:
        matrix: attention weights ``[..., q, k]``.
        hide_q: bool ``[q]``, True for query rows to drop.
        hide_k: bool ``[k]``, True for key columns to drop.
        renormalise: rescale each remaining row to sum to 1 over the kept keys (rows with no
            mass left stay zero).

    Returns:
        ``(matrix [..., q_kept, k_kept], kept_q_idx, kept_k_idx)``, the indices into the
        original axes.
    """
    matrix = np.asarray(matrix)
    hide_q = np.asarray(hide_q, dtype=bool)
    hide_k = np.asarray(hide_k, dtype=bool)
    if hide_q.shape != matrix.shape[-2:-1] or hide_k.shape != matrix.shape[-1:]:
        raise ValueError(
            f"masks {hide_q.shape}, {hide_k.shape} do not fit a matrix of shape {matrix.shape}"
        )
    kept_q = np.flatnonzero(~hide_q)
    kept_k = np.flatnonzero(~hide_k)
    kept = matrix[..., kept_q, :][..., kept_k]
    if renormalise:
        total = kept.sum(axis=-1, keepdims=True)
        kept = np.divide(kept, total, out=np.zeros_like(kept, dtype=float), where=total > 0)
    return kept, kept_q, kept_k
