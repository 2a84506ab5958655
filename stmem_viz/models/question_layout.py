"""Training batches of story-gpt laid out as the story first, then all its questions.

A story read once with a question after each sentence is one training sequence (see
:func:`stmem_viz.models.story_gpt._pack`): a story token reads the story tokens before it; a
question token reads the story told up to its question and the earlier tokens of its own
question, nothing else. In the order the tokens were told, two thirds of such a sequence are
question tokens, and a dense attention over it spends most of its work on pairs that the mask
forbids (a question never reads another question).

This module moves every story token to the front of its row and every question token after
them, and computes the attention in the parts that are allowed:

- story to story: causal, with PyTorch's fused ``scaled_dot_product_attention``;
- question to story: a dense ``[questions x story]`` score matrix, masked to the story told
  before each question;
- question to its own question: a window of the last ``W`` question tokens, masked to the same
  question.

The two question parts share one softmax, so each weight equals the weight of the dense masked
attention; rotary positions are given explicitly and do not change with the layout. The result
equals the stock model run on the told order with the full mask (see :func:`full_mask`, which
tests use to check it). Layers whose attention is supervised compute the story-to-story part
explicitly and keep the weights over story keys (:class:`SupervisedWeights`).

Only training uses this layout; the trained model is a standard Llama model and reads prompts
in the ordinary way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import repeat_kv


@dataclass
class QuestionLayout:
    """Where the parts of a story-then-questions batch are.

    Attributes:
        story: ``S``, the width of the story part (positions ``0 .. S-1`` of each row).
        told: ``[B, 1, Q, S]`` bool, True where a question token may read a story token.
        window: ``[B, 1, Q, W]`` bool, True where a question token may read the question token
            ``w - W + 1`` places before it (``w`` = the last slot, itself).
    """

    story: int
    told: torch.Tensor
    window: torch.Tensor

    @property
    def width(self) -> int:
        """``W``, the longest question (in tokens, its answer included)."""
        return self.window.shape[-1]

    def to(self, device) -> QuestionLayout:
        """The same layout with its masks on ``device``."""
        return QuestionLayout(self.story, self.told.to(device), self.window.to(device))


@dataclass
class SupervisedWeights:
    """Attention weights over the story keys of one supervised layer.

    Attributes:
        story: ``[B, H, S, S]`` the weights of each story token over the story tokens.
        questions: ``[B, H, Q, S]`` the weights of each question token over the story tokens
            (the rest of its weight lies on its own question).
    """

    story: torch.Tensor
    questions: torch.Tensor


def layout_rows(block: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The story-then-questions order of one sequence told in order.

    Args:
        block: per token, -1 for a story token, else the index of the question it belongs to.

    Returns:
        ``new_index [T]`` (the place of each told token in its part: story tokens from 0,
        question tokens from 0 after the story), ``is_story [T]``, and for each question token
        in layout order ``told [Q]`` (story tokens before it) and ``start [Q]`` (the layout
        index within the question part where its question starts).
    """
    block = np.asarray(block)
    is_story = block == -1
    n_story_before = np.cumsum(is_story) - is_story  # story tokens told before each token
    question_index = np.cumsum(~is_story) - ~is_story
    new_index = np.where(is_story, n_story_before, question_index)
    told = n_story_before[~is_story]
    q_blocks = block[~is_story]
    begins = np.diff(q_blocks, prepend=q_blocks[:1] - 1) != 0  # first token of each question
    starts = np.maximum.accumulate(np.where(begins, np.arange(len(q_blocks)), 0))
    return new_index, is_story, told, starts


def build_layout(
    told: Sequence[np.ndarray],
    starts: Sequence[np.ndarray],
    story_width: int,
    question_width: int,
) -> QuestionLayout:
    """The masks of a batch, from each row's question tokens (their ``told`` and ``start``, see
    :func:`layout_rows`).

    A padding question token reads the first story token (``<bos>``) only, so that its softmax
    is defined; no real token reads a padding token.
    """
    longest = max((int(np.max(np.arange(len(s)) - s)) + 1 for s in starts if len(s)), default=1)
    told_mask = torch.zeros((len(told), question_width, story_width), dtype=torch.bool)
    window = torch.zeros((len(told), question_width, longest), dtype=torch.bool)
    told_mask[:, :, 0] = True
    keys = torch.arange(story_width)
    offsets = torch.arange(longest) - (longest - 1)  # [W]: -(W-1) .. 0
    for row, (row_told, row_starts) in enumerate(zip(told, starts, strict=True)):
        n = len(row_told)
        if n == 0:
            continue
        told_mask[row, :n] = keys[None, :] < torch.as_tensor(row_told)[:, None]
        places = torch.arange(n)[:, None] + offsets[None, :]  # [n, W]
        window[row, :n] = places >= torch.as_tensor(row_starts)[:, None]
    return QuestionLayout(story=story_width, told=told_mask[:, None], window=window[:, None])


def _shifted(x: torch.Tensor, back: int) -> torch.Tensor:
    """``[B, H, Q, d]`` moved ``back`` places later along Q (zeros in front): row ``i`` holds
    token ``i - back``."""
    if back == 0:
        return x
    return F.pad(x, (0, 0, back, 0))[:, :, : x.shape[2]]


def layout_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    layout: QuestionLayout,
    scaling: float,
    dropout: float = 0.0,
    keep_weights: bool = False,
) -> tuple[torch.Tensor, SupervisedWeights | None]:
    """Attention of a story-then-questions batch, in the allowed parts only.

    Args:
        module: the attention module (for its key/value grouping and training flag).
        query: ``[B, H, T, d]`` after rotary positions.
        key: ``[B, KV, T, d]``.
        value: ``[B, KV, T, d]``.
        layout: where the story and the questions are.
        scaling: the score scale (``d ** -0.5`` for Llama).
        dropout: attention dropout while training.
        keep_weights: also return the weights over the story keys.

    Returns:
        ``[B, T, H, d]`` attention output (the layout transformers' attention functions
        return) and the weights when asked for.
    """
    groups = module.num_key_value_groups
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)  # [B, H, T, d]
    s = layout.story
    q_story, q_questions = query[:, :, :s], query[:, :, s:]
    k_story, k_questions = key[:, :, :s], key[:, :, s:]
    v_story, v_questions = value[:, :, :s], value[:, :, s:]
    p = dropout if module.training else 0.0
    lowest = torch.finfo(query.dtype).min

    # Story to story: causal.
    if keep_weights:
        scores = q_story @ k_story.transpose(-1, -2) * scaling  # [B, H, S, S]
        causal = torch.ones(s, s, dtype=torch.bool, device=query.device).tril()
        story_weights = scores.masked_fill(~causal, lowest).softmax(-1)
        out_story = F.dropout(story_weights, p, module.training) @ v_story  # [B, H, S, d]
    else:
        out_story = F.scaled_dot_product_attention(
            q_story, k_story, v_story, is_causal=True, dropout_p=p, scale=scaling
        )

    # Questions to the story told before them and to their own question, in one softmax.
    width = layout.width
    to_story = q_questions @ k_story.transpose(-1, -2) * scaling  # [B, H, Q, S]
    to_story = to_story.masked_fill(~layout.told, lowest)
    # Slot w of the window holds the question token W - 1 - w places back. A window this short
    # is cheaper as W shifted products than as a batched matrix product.
    to_own = torch.stack(
        [(q_questions * _shifted(k_questions, width - 1 - w)).sum(-1) for w in range(width)],
        -1,
    )  # [B, H, Q, W]
    to_own = (to_own * scaling).masked_fill(~layout.window, lowest)
    weights = torch.cat([to_story, to_own], -1).softmax(-1)  # [B, H, Q, S + W]
    question_story_weights = weights[..., :s]
    on_story, on_own = F.dropout(weights, p, module.training).split([s, width], -1)
    out_questions = on_story @ v_story  # [B, H, Q, d]
    for w, weight in enumerate(on_own.unbind(-1)):  # weight: [B, H, Q]
        out_questions = out_questions + weight[..., None] * _shifted(v_questions, width - 1 - w)

    out = torch.cat([out_story, out_questions], 2).transpose(1, 2).contiguous()  # [B, T, H, d]
    if not keep_weights:
        return out, None
    return out, SupervisedWeights(story=story_weights, questions=question_story_weights)


def full_mask(layout: QuestionLayout) -> torch.Tensor:
    """The additive ``[B, 1, T, T]`` mask that gives the stock model the same attention.

    For tests and benchmarks: training itself never builds this ``T x T`` mask.
    """
    batch, _, q, s = layout.told.shape
    width = layout.width
    allowed = torch.zeros((batch, s + q, s + q), dtype=torch.bool)
    allowed[:, :s, :s] = torch.ones(s, s, dtype=torch.bool).tril()
    allowed[:, s:, :s] = layout.told[:, 0]
    for w in range(width):
        back = width - 1 - w
        rows = torch.arange(back, q)
        allowed[:, s + rows, s + rows - back] = layout.window[:, 0, back:, w]
    mask = torch.zeros(allowed.shape, dtype=torch.float32)
    mask.masked_fill_(~allowed, torch.finfo(torch.float32).min)
    return mask[:, None]
