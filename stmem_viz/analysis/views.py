"""Turn a captured attention run into the matrices a view shows: which tokens lie on each axis,
one head or the mean of heads, with special tokens hidden on request."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STACK_TITLES = {
    "self": "self-attention",
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
    "cross": "cross-attention (decoder query x encoder key)",
}


@dataclass
class MatrixView:
    """One [query, key] matrix ready to draw, with the positions it kept."""

    matrix: np.ndarray  # [q, k] weights
    scores: np.ndarray | None  # [q, k] raw scores, -inf where masked; None if unavailable
    query_tokens: list[str]
    key_tokens: list[str]
    query_indices: list[int]
    key_indices: list[int]


def stack_axes(capture, stack: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Query tokens, key tokens and their special-token masks for one attention stack."""
    source, source_special = list(capture.tokens), np.asarray(capture.special, dtype=bool)
    if stack in ("self", "encoder"):
        return source, source, source_special, source_special
    target = list(capture.target_tokens or [])
    target_special = np.asarray(capture.target_special, dtype=bool)
    if stack == "decoder":
        return target, target, target_special, target_special
    return target, source, target_special, source_special


def matrix_view(
    capture,
    stack: str,
    layer: int,
    head: int | None,
    hide_special: bool = False,
    hide_first: bool = False,
    renormalise: bool = True,
) -> MatrixView:
    """The matrix for one head (or the mean over heads when ``head`` is None) of one layer.

    Hidden tokens are removed from both axes; with ``renormalise`` each remaining row is rescaled
    to sum to 1 over the keys still shown. Raw scores are never renormalised.
    """
    from stmem_viz.analysis.attention import hide_tokens

    weights = capture.weights[(stack, layer)]  # [heads, q, k]
    scores = capture.scores.get((stack, layer)) if capture.scores else None
    matrix = weights.mean(axis=0) if head is None else weights[head]
    raw = None if scores is None or head is None else scores[head]
    q_tokens, k_tokens, q_special, k_special = stack_axes(capture, stack)
    hide_q = q_special.copy() if hide_special else np.zeros(len(q_tokens), dtype=bool)
    hide_k = k_special.copy() if hide_special else np.zeros(len(k_tokens), dtype=bool)
    if hide_first:
        hide_q[:1] = True
        hide_k[:1] = True
    if hide_q.all() or hide_k.all():
        hide_q[:] = False
        hide_k[:] = False
    shown, kept_q, kept_k = hide_tokens(matrix, hide_q, hide_k, renormalise)
    if raw is not None:
        raw = raw[np.ix_(kept_q, kept_k)]
    return MatrixView(
        matrix=shown,
        scores=raw,
        query_tokens=[q_tokens[i] for i in kept_q],
        key_tokens=[k_tokens[j] for j in kept_k],
        query_indices=[int(i) for i in kept_q],
        key_indices=[int(j) for j in kept_k],
    )


DEFAULT_STORY = (
    "Mary went to the kitchen. John picked up the apple. Sandra travelled to the garden. "
    "John went to the office. Mary moved to the bathroom. Daniel journeyed to the hallway. "
    "Where is John?"
)
DEFAULT_SOURCE = "Mary went to the kitchen. John picked up the apple there."
DEFAULT_TARGET = "Mary is in the kitchen. John has the apple."


def default_texts(kind: str) -> tuple[str, str | None]:
    """A good first input for a model kind: (text or source, target or None)."""
    if kind == "encoder-decoder":
        return DEFAULT_SOURCE, DEFAULT_TARGET
    return DEFAULT_STORY, None


def stacks_for(kind: str) -> list[str]:
    """The attention stacks a model kind has, in display order."""
    if kind == "encoder-decoder":
        return ["cross", "encoder", "decoder"]
    return ["self"]
