"""Recurrent Entity Network (EntNet).

Henaff, Weston, Szlam, Bordes and LeCun (2017), "Tracking the World State with Recurrent Entity
Networks", ICLR. https://arxiv.org/abs/1612.03969

The network keeps ``N`` memory slots. Slot ``j`` has a learned key ``w_j`` and a state ``h_j``
(both of size ``D``); the states start equal to the keys. For each sentence vector ``s``:

- gate: ``g_j = sigmoid(s . h_j + s . w_j)``
- candidate: ``c_j = phi(U h_j + V w_j + W s)`` with ``phi`` a parametric ReLU
- update: ``h_j <- h_j + g_j * c_j``, then ``h_j <- h_j / ||h_j||``

A sentence is encoded as ``s = sum_i f_i * e_i``, with ``e_i`` the embedding of word ``i`` and
``f_i`` a learned multiplicative position mask. The question ``q`` is encoded the same way with
its own mask. The answer is read as ``p_j = softmax(q . h_j)``, ``u = sum_j p_j h_j``,
``y = R phi(q + H u)``.

Keys are free parameters here (the paper's "untied" model), not tied to entity embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class EntNetStep:
    """One write of a sentence into the slots, for a batch.

    Attributes:
        gates: ``[B, N]`` gate value of every slot, in (0, 1).
        candidates: ``[B, N, D]`` candidate vectors ``c_j``.
        slots: ``[B, N, D]`` slot states after the update and normalisation.
    """

    gates: Tensor
    candidates: Tensor
    slots: Tensor


@dataclass
class EntNetTrace:
    """Everything the EntNet did while reading one story and answering its question.

    ``S`` is the number of sentences, ``N`` the number of slots, ``D`` the slot size and
    ``V`` the vocabulary size.

    Attributes:
        slots_before: ``[S, N, D]`` slot states before each sentence was written.
        gates: ``[S, N]`` how strongly each sentence was written into each slot.
        candidates: ``[S, N, D]`` the candidate vector proposed for each slot.
        slots_after: ``[S, N, D]`` slot states after each sentence (normalised).
        read_attention: ``[N]`` attention of the question over the final slots.
        answer_probs: ``[V]`` probability of every vocabulary word as the answer.
        answers_by_prefix: ``[S, V]`` answer probabilities if the question were asked right
            after each sentence.
        silenced_slots: slots excluded from the read (their attention is exactly 0).
        sentences: the sentences as read.
        question: the question as read.
        unknown_words: words not in the model's vocabulary (read as ``<unk>``).
    """

    slots_before: np.ndarray
    gates: np.ndarray
    candidates: np.ndarray
    slots_after: np.ndarray
    read_attention: np.ndarray
    answer_probs: np.ndarray
    answers_by_prefix: np.ndarray
    silenced_slots: tuple[int, ...] = ()
    sentences: list[str] = field(default_factory=list)
    question: str = ""
    unknown_words: list[str] = field(default_factory=list)


def normalise(slots: Tensor) -> Tensor:
    """Scale each slot to unit length. ``[..., N, D] -> [..., N, D]``."""
    return slots / slots.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class EntNet(nn.Module):
    """A Recurrent Entity Network over word-id stories.

    Args:
        vocab_size: number of words; id 0 is padding.
        dim: ``D``, the size of embeddings, keys and slot states.
        slots: ``N``, the number of memory slots.
        max_words: longest sentence or question (in tokens) the position masks cover.
    """

    def __init__(self, vocab_size: int, dim: int = 100, slots: int = 20, max_words: int = 24):
        super().__init__()
        self.vocab_size, self.dim, self.n_slots, self.max_words = vocab_size, dim, slots, max_words
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.story_mask = nn.Parameter(torch.ones(max_words, dim))
        self.question_mask = nn.Parameter(torch.ones(max_words, dim))
        self.keys = nn.Parameter(torch.empty(slots, dim))
        self.U = nn.Linear(dim, dim, bias=False)
        self.V = nn.Linear(dim, dim, bias=False)
        self.W = nn.Linear(dim, dim, bias=False)
        self.candidate_act = nn.PReLU(init=1.0)
        self.H = nn.Linear(dim, dim, bias=False)
        self.R = nn.Linear(dim, vocab_size, bias=False)
        self.output_act = nn.PReLU(init=1.0)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, 0.1) embeddings and keys, as in the paper; default init elsewhere."""
        nn.init.normal_(self.embedding.weight, std=0.1)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        nn.init.normal_(self.keys, std=0.1)

    def encode(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """Sum of masked word embeddings. ``tokens [..., W] -> [..., D]`` (W <= max_words)."""
        width = tokens.shape[-1]
        if width > self.max_words:
            raise ValueError(f"{width} words exceed the position mask size {self.max_words}")
        return (self.embedding(tokens) * mask[:width]).sum(dim=-2)

    def encode_story(self, sentences: Tensor) -> Tensor:
        """``[B, S, W]`` word ids -> ``[B, S, D]`` sentence vectors."""
        return self.encode(sentences, self.story_mask)

    def encode_question(self, question: Tensor) -> Tensor:
        """``[B, W]`` word ids -> ``[B, D]`` question vector."""
        return self.encode(question, self.question_mask)

    def initial_slots(self, batch: int) -> Tensor:
        """Slot states before any sentence: the keys. Returns ``[B, N, D]``."""
        return self.keys.unsqueeze(0).expand(batch, -1, -1)

    def step(self, slots: Tensor, sentence: Tensor) -> EntNetStep:
        """Write one sentence vector into the slots.

        Args:
            slots: ``[B, N, D]`` states before the sentence.
            sentence: ``[B, D]`` encoded sentence ``s``.

        Returns:
            The gates ``[B, N]``, candidates ``[B, N, D]`` and new states ``[B, N, D]``.
        """
        keys = self.keys.unsqueeze(0)  # (1, N, D)
        s = sentence.unsqueeze(1)  # (B, 1, D)

        # gate: how much the sentence concerns each slot, by content and by key
        gates = torch.sigmoid((s * slots).sum(-1) + (s * keys).sum(-1))  # (B, N)

        # candidate memory and gated, normalised update
        candidates = self.candidate_act(self.U(slots) + self.V(keys) + self.W(s))  # (B, N, D)
        updated = normalise(slots + gates.unsqueeze(-1) * candidates)
        return EntNetStep(gates=gates, candidates=candidates, slots=updated)

    def read(
        self, slots: Tensor, question: Tensor, silence: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Answer a question from the slots.

        Args:
            slots: ``[..., N, D]`` slot states.
            question: ``[..., D]`` encoded question ``q``.
            silence: optional ``[N]`` bool; True slots are left out of the attention.

        Returns:
            ``attention [..., N]`` and answer logits ``[..., V]``.
        """
        scores = (slots * question.unsqueeze(-2)).sum(-1)  # (..., N)
        if silence is not None and bool(silence.any()):
            scores = scores.masked_fill(silence, float("-inf"))
        attention = torch.softmax(scores, dim=-1)
        if silence is not None and bool(silence.all()):
            attention = torch.zeros_like(scores)
        u = (attention.unsqueeze(-1) * slots).sum(-2)  # (..., D)
        logits = self.R(self.output_act(question + self.H(u)))
        return attention, logits

    def run(self, sentences: Tensor) -> Tensor:
        """Read whole stories and return the final slot states.

        This is :meth:`step` applied sentence by sentence, with the terms that do not depend
        on the slot states (``s . w_j``, ``V w_j``, ``W s``) computed once for all sentences.

        Args:
            sentences: ``[B, S, W]`` word ids; rows of padding only (id 0) must follow the real
                sentences. They get a zero gate, which leaves the (already normalised) slots as
                they are, so stories of different lengths can share a batch.

        Returns:
            ``[B, N, D]`` slot states after the last real sentence of each story.
        """
        encoded = self.encode_story(sentences)  # (B, S, D)
        present = (sentences != 0).any(-1).to(encoded.dtype)  # (B, S)
        key_match = encoded @ self.keys.T  # (B, S, N): s . w_j
        drive = self.W(encoded).unsqueeze(2) + self.V(self.keys)  # (B, S, N, D): W s + V w_j
        slots = self.initial_slots(sentences.shape[0])
        for t in range(sentences.shape[1]):
            content = torch.bmm(slots, encoded[:, t].unsqueeze(-1)).squeeze(-1)  # (B, N)
            gates = torch.sigmoid(content + key_match[:, t]) * present[:, t, None]
            candidates = self.candidate_act(self.U(slots) + drive[:, t])  # (B, N, D)
            slots = normalise(slots + gates.unsqueeze(-1) * candidates)
        return slots

    def forward(
        self, sentences: Tensor, question: Tensor, silence_slots: Sequence[int] = ()
    ) -> Tensor:
        """Answer logits for a batch of stories.

        Args:
            sentences: ``[B, S, W]`` word ids, padded with 0.
            question: ``[B, W']`` word ids, padded with 0.
            silence_slots: slots to leave out of the read.

        Returns:
            ``[B, V]`` answer logits.
        """
        slots = self.run(sentences)
        _, logits = self.read(slots, self.encode_question(question), self._silence(silence_slots))
        return logits

    def _silence(self, silence_slots: Sequence[int]) -> Tensor | None:
        if not silence_slots:
            return None
        bad = [j for j in silence_slots if not 0 <= int(j) < self.n_slots]
        if bad:
            raise ValueError(f"slots {bad} do not exist; this network has {self.n_slots}")
        mask = torch.zeros(self.n_slots, dtype=torch.bool, device=self.keys.device)
        mask[list(map(int, silence_slots))] = True
        return mask

    @torch.no_grad()
    def answer_after_each_sentence(
        self, sentences: Tensor, question: Tensor, silence_slots: Sequence[int] = ()
    ) -> Tensor:
        """Answer probabilities with the question asked after every prefix of one story.

        One pass over the story suffices because the slots are the whole state.

        Args:
            sentences: ``[S, W]`` word ids of one story.
            question: ``[W']`` word ids.
            silence_slots: slots to leave out of every read.

        Returns:
            ``[S, V]`` probabilities; row ``t`` answers after sentences ``0..t``.
        """
        return torch.from_numpy(self.trace(sentences, question, silence_slots).answers_by_prefix)

    @torch.no_grad()
    def trace(
        self, sentences: Tensor, question: Tensor, silence_slots: Sequence[int] = ()
    ) -> EntNetTrace:
        """Read one story step by step and record every gate, candidate and slot state.

        Args:
            sentences: ``[S, W]`` word ids of one story (no padding rows).
            question: ``[W']`` word ids.
            silence_slots: slots to leave out of the read. They still take writes (their
                gates and states are recorded as usual); only the question cannot see them,
                so their read attention is exactly 0 and the answer comes from the others.

        Returns:
            An :class:`EntNetTrace` with numpy arrays (text fields left empty).
        """
        encoded = self.encode_story(sentences.unsqueeze(0))[0]  # (S, D)
        q = self.encode_question(question.unsqueeze(0))  # (1, D)
        silence = self._silence(silence_slots)

        # write every sentence, keeping the states on both sides of each write
        slots = self.initial_slots(1)
        before, gates, candidates, after = [], [], [], []
        for t in range(encoded.shape[0]):
            step = self.step(slots, encoded[t : t + 1])
            before.append(slots[0])
            gates.append(step.gates[0])
            candidates.append(step.candidates[0])
            after.append(step.slots[0])
            slots = step.slots

        # read after every prefix (the last row is the real answer)
        states = torch.stack(after)  # (S, N, D)
        attention, logits = self.read(states, q.expand(states.shape[0], -1), silence)
        probs = torch.softmax(logits, dim=-1)  # (S, V)
        return EntNetTrace(
            slots_before=torch.stack(before).cpu().numpy(),
            gates=torch.stack(gates).cpu().numpy(),
            candidates=torch.stack(candidates).cpu().numpy(),
            slots_after=states.cpu().numpy(),
            read_attention=attention[-1].cpu().numpy(),
            answer_probs=probs[-1].cpu().numpy(),
            answers_by_prefix=probs.cpu().numpy(),
            silenced_slots=tuple(int(j) for j in silence_slots),
        )
