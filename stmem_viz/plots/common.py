"""Helpers every figure builder shares: safe token labels, dense-matrix pooling, sizing."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np


def safe_label(text: str) -> str:
    """Token text as a plotly label that shows literally.

    Plotly reads a small subset of HTML in tick labels and hover text (``<b>``, ``<br>``, ``<a>``),
    so ``<`` and ``&`` are escaped to entities that plotly displays as the characters.
    """
    return html.escape(str(text), quote=False)


def token_labels(tokens: Sequence[str], indices: Sequence[int] | None = None) -> list[str]:
    """Escaped labels ``"i: token"`` so that repeated tokens stay distinct on an axis."""
    indices = range(len(tokens)) if indices is None else indices
    return [f"{i}: {safe_label(t)}" for i, t in zip(indices, tokens, strict=True)]


def pool_matrix(matrix: np.ndarray, max_cells: int) -> tuple[np.ndarray, int]:
    """Shrink a [q, k] attention matrix to at most ``max_cells`` per side for display.

    Each pooled cell holds the mean over its block of queries of the total weight on its block of
    keys, so pooled rows of an attention matrix still sum to 1.

    Returns:
        The pooled matrix and the block size (1 when no pooling was needed).
    """
    q, k = matrix.shape
    block = int(np.ceil(max(q, k) / max_cells)) if max(q, k) > max_cells else 1
    if block == 1:
        return matrix, 1
    finite = np.where(np.isfinite(matrix), matrix, 0.0)
    pq, pk = -(-q // block), -(-k // block)
    padded = np.zeros((pq * block, pk * block), dtype=np.float64)
    padded[:q, :k] = finite
    summed = padded.reshape(pq, block, pk, block).sum(axis=3)  # [pq, block, pk]: key blocks summed
    rows = np.minimum(block, q - np.arange(pq) * block)  # real queries in each block
    return (summed.sum(axis=1) / rows[:, None]).astype(np.float32), block


def tick_step(n: int, max_ticks: int = 60) -> int:
    """Show every ``tick_step``-th label so that at most ``max_ticks`` labels crowd an axis."""
    return max(1, int(np.ceil(n / max_ticks)))
