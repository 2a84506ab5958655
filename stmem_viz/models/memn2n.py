"""End-to-end memory network (MemN2N).

Sukhbaatar, Szlam, Weston and Fergus (2015), "End-To-End Memory Networks", NeurIPS.
https://arxiv.org/abs/1503.08895

Each sentence ``x_i`` is stored twice: as a key ``m_i = sum_j l_j * A x_ij + T_A(i)`` and as a
value ``c_i = sum_j l_j * C x_ij + T_C(i)``. ``l_j`` is the paper's position encoding
``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)`` and ``T(i)`` a learned temporal encoding indexed by how
many sentences before the question ``x_i`` came (0 = the last sentence). The question
``u = sum_j l_j * B x_j`` reads the memory over ``K`` hops:
``p = softmax(u . m)``, ``o = sum_i p_i c_i``, ``u <- u + o``; the answer is
``softmax(W (u + o))``.

Weights are tied between adjacent hops as in the paper: ``A_1 = B``, ``A_{k+1} = C_k`` and
``W^T = C_K`` (the temporal tables are tied the same way). The paper's "linear start" (no
softmax in the hops during the first epochs) is available through ``forward(linear=True)``.

Memory size: the network holds the last ``memory_size`` sentences of a story. In a longer
story the oldest sentences fall out of memory (they get no attention and do not affect the
answer); traces mark them with ``in_memory = False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class MemN2NTrace:
    """Where each hop of a MemN2N looked while answering one question.

    ``K`` is the number of hops, ``S`` the number of sentences and ``V`` the vocabulary size.

    Attributes:
        hop_attention: ``[K, S]`` attention of each hop over the sentences; each row sums to 1
            over the sentences in memory and is exactly 0 elsewhere.
        answer_probs: ``[V]`` probability of every vocabulary word as the answer.
        in_memory: ``[S]`` bool, False for sentences dropped by ablation or too old to fit.
        dropped_sentences: the sentence indices removed by ablation.
        sentences: the sentences as read.
        question: the question as read.
        unknown_words: words not in the model's vocabulary (read as ``<unk>``).
    """

    hop_attention: np.ndarray
    answer_probs: np.ndarray
    in_memory: np.ndarray
    dropped_sentences: tuple[int, ...] = ()
    sentences: list[str] = field(default_factory=list)
    question: str = ""
    unknown_words: list[str] = field(default_factory=list)


def position_encoding(lengths: Tensor, width: int, dim: int) -> Tensor:
    """The paper's position encoding ``l_kj = (1 - j/J) - (k/d)(1 - 2j/J)``.

    ``j`` (1-based word position) runs over ``width`` positions, ``k`` (1-based) over the
    ``dim`` embedding components, and ``J`` is each sentence's own length. Positions past a
    sentence's end get values too; they multiply padding embeddings, which are zero.

    Args:
        lengths: ``[...]`` number of words ``J`` in each sentence (0 is treated as 1).
        width: ``W``, the number of word positions.
        dim: ``d``, the embedding size.

    Returns:
        ``[..., W, d]`` weights.
    """
    J = lengths.clamp_min(1).to(torch.float32)[..., None, None]  # (..., 1, 1)
    j = torch.arange(1, width + 1, dtype=torch.float32, device=lengths.device)[:, None]  # (W, 1)
    k = torch.arange(1, dim + 1, dtype=torch.float32, device=lengths.device)[None, :]  # (1, d)
    return (1 - j / J) - (k / dim) * (1 - 2 * j / J)


class MemN2N(nn.Module):
    """An end-to-end memory network with adjacent weight tying.

    Args:
        vocab_size: number of words; id 0 is padding.
        dim: embedding size ``d``.
        hops: number of memory reads ``K``.
        memory_size: ``M``, how many of the latest sentences the memory holds.
    """

    def __init__(self, vocab_size: int, dim: int = 50, hops: int = 3, memory_size: int = 50):
        super().__init__()
        self.vocab_size, self.dim, self.hops, self.memory_size = vocab_size, dim, hops, memory_size
        # embeddings[0] = B = A_1; embeddings[k] = C_k = A_{k+1}; embeddings[K] = C_K = W^T
        self.embeddings = nn.ModuleList(
            nn.Embedding(vocab_size, dim, padding_idx=0) for _ in range(hops + 1)
        )
        self.temporal = nn.Parameter(torch.empty(hops + 1, memory_size, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, 0.1) for every embedding and temporal table, as in the paper."""
        for emb in self.embeddings:
            nn.init.normal_(emb.weight, std=0.1)
            with torch.no_grad():
                emb.weight[0].zero_()
        nn.init.normal_(self.temporal, std=0.1)

    def embed(self, tokens: Tensor, layer: int) -> Tensor:
        """Position-weighted bag of words. ``[..., W]`` ids -> ``[..., d]``."""
        lengths = (tokens != 0).sum(-1)
        weights = position_encoding(lengths, tokens.shape[-1], self.dim)  # (..., W, d)
        return (self.embeddings[layer](tokens) * weights).sum(-2)

    def memory_mask(self, sentences: Tensor, drop: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Which sentences are in memory, and how long before the question each came.

        Args:
            sentences: ``[B, S, W]`` word ids; rows of padding only follow the real sentences.
            drop: optional ``[B, S]`` bool of sentences removed by ablation.

        Returns:
            ``in_memory [B, S]`` bool and ``age [B, S]`` long (0 = last sentence), clamped to
            the temporal table.
        """
        present = (sentences != 0).any(-1)  # (B, S)
        count = present.sum(-1, keepdim=True)  # (B, 1)
        position = torch.arange(sentences.shape[1], device=sentences.device)[None, :]
        age = count - 1 - position  # (B, S)
        in_memory = present & (age >= 0) & (age < self.memory_size)
        if drop is not None:
            in_memory = in_memory & ~drop
        return in_memory, age.clamp(0, self.memory_size - 1)

    def forward(
        self,
        sentences: Tensor,
        question: Tensor,
        drop: Tensor | None = None,
        linear: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Answer logits and the attention of every hop.

        Args:
            sentences: ``[B, S, W]`` word ids, oldest sentence first, padded with 0.
            question: ``[B, W']`` word ids, padded with 0.
            drop: optional ``[B, S]`` bool; True sentences are removed from memory (the other
                sentences keep their temporal encodings).
            linear: leave out the softmax in the hops (the paper's linear start, for training).

        Returns:
            ``logits [B, V]`` and ``attention [B, K, S]`` (0 for sentences not in memory).
        """
        in_memory, age = self.memory_mask(sentences, drop)
        u = self.embed(question, 0)  # (B, d)
        keys = self.embed(sentences, 0) + self.temporal[0][age]  # (B, S, d), A_1 = B
        hops = []
        for k in range(1, self.hops + 1):
            # values use C_k, which is also the next hop's key embedding A_{k+1}
            values = self.embed(sentences, k) + self.temporal[k][age]  # (B, S, d)
            scores = (keys * u.unsqueeze(1)).sum(-1)  # (B, S)
            if linear:
                p = scores.masked_fill(~in_memory, 0.0)
            else:
                p = torch.softmax(scores.masked_fill(~in_memory, float("-inf")), dim=-1)
                p = torch.nan_to_num(p, nan=0.0)  # a story with nothing in memory
            hops.append(p)
            u = u + (p.unsqueeze(-1) * values).sum(1)
            keys = values
        logits = u @ self.embeddings[self.hops].weight.T  # (B, V)
        return logits, torch.stack(hops, dim=1)

    @torch.no_grad()
    def trace(
        self, sentences: Tensor, question: Tensor, drop_sentences: Sequence[int] = ()
    ) -> MemN2NTrace:
        """Answer one question and record each hop's attention.

        Args:
            sentences: ``[S, W]`` word ids of one story (no padding rows).
            question: ``[W']`` word ids.
            drop_sentences: 0-based sentence indices to remove from memory; the attention keeps
                shape ``[K, S]`` with zeros at the dropped sentences.

        Returns:
            A :class:`MemN2NTrace` with numpy arrays (text fields left empty).
        """
        n = sentences.shape[0]
        bad = [i for i in drop_sentences if not 0 <= int(i) < n]
        if bad:
            raise ValueError(f"sentences {bad} do not exist; the story has {n}")
        drop = torch.zeros(1, n, dtype=torch.bool, device=sentences.device)
        drop[0, list(map(int, drop_sentences))] = True
        logits, attention = self(sentences.unsqueeze(0), question.unsqueeze(0), drop)
        in_memory, _ = self.memory_mask(sentences.unsqueeze(0), drop)
        return MemN2NTrace(
            hop_attention=attention[0].cpu().numpy(),
            answer_probs=torch.softmax(logits[0], -1).cpu().numpy(),
            in_memory=in_memory[0].cpu().numpy(),
            dropped_sentences=tuple(sorted({int(i) for i in drop_sentences})),
        )
