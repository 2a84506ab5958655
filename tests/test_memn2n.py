"""The end-to-end memory network follows Sukhbaatar et al. (2015)."""

import torch

from stmem_viz.models.memn2n import MemN2N, position_encoding

VOCAB = 12


def tiny_memn2n(memory_size: int = 8) -> MemN2N:
    torch.manual_seed(0)
    return MemN2N(VOCAB, dim=6, hops=3, memory_size=memory_size)


def tiny_story() -> tuple[torch.Tensor, torch.Tensor]:
    sentences = torch.tensor([[2, 3, 4, 0], [5, 6, 0, 0], [7, 3, 8, 9], [4, 4, 2, 0]])
    question = torch.tensor([10, 2, 11])
    return sentences, question


def test_position_encoding_matches_the_papers_formula():
    J, d = 5, 7
    weights = position_encoding(torch.tensor(J), width=J, dim=d)
    for j in range(1, J + 1):
        for k in range(1, d + 1):
            expected = (1 - j / J) - (k / d) * (1 - 2 * j / J)
            assert abs(weights[j - 1, k - 1].item() - expected) < 1e-6


def test_position_encoding_uses_each_sentences_own_length():
    weights = position_encoding(torch.tensor([2, 4]), width=4, dim=3)
    torch.testing.assert_close(weights[0, :2], position_encoding(torch.tensor(2), 2, 3))
    torch.testing.assert_close(weights[1], position_encoding(torch.tensor(4), 4, 3))


def test_hop_attention_rows_sum_to_one():
    trace = tiny_memn2n().trace(*tiny_story())
    assert trace.hop_attention.shape == (3, 4)
    assert abs(trace.hop_attention.sum(-1) - 1).max() < 1e-6
    assert trace.in_memory.all()


def test_dropping_a_sentence_keeps_the_shape_and_zeroes_its_attention():
    net = tiny_memn2n()
    full = net.trace(*tiny_story())
    dropped = net.trace(*tiny_story(), drop_sentences=[1])
    assert dropped.hop_attention.shape == full.hop_attention.shape
    assert (dropped.hop_attention[:, 1] == 0).all()
    assert abs(dropped.hop_attention.sum(-1) - 1).max() < 1e-6
    assert list(dropped.in_memory) == [True, False, True, True]
    assert abs(dropped.answer_probs - full.answer_probs).max() > 1e-6


def test_only_the_last_memory_size_sentences_are_remembered():
    sentences, question = tiny_story()
    net = tiny_memn2n(memory_size=2)
    trace = net.trace(sentences, question)
    assert list(trace.in_memory) == [False, False, True, True]
    assert (trace.hop_attention[:, :2] == 0).all()
    logits_full, _ = net(sentences[None], question[None])
    logits_last, _ = net(sentences[None, 2:], question[None])
    torch.testing.assert_close(logits_full, logits_last)


def test_padding_sentences_do_not_change_the_answer():
    net = tiny_memn2n()
    sentences, question = tiny_story()
    padded = torch.cat([sentences, torch.zeros(3, 4, dtype=torch.long)])[None]
    logits_padded, attention = net(padded, question[None])
    logits, _ = net(sentences[None], question[None])
    torch.testing.assert_close(logits_padded, logits)
    assert (attention[0, :, 4:] == 0).all()


def test_forward_matches_the_papers_equations_with_adjacent_tying():
    net = tiny_memn2n()
    sentences, question = tiny_story()
    S, d = sentences.shape[0], net.dim

    def bag(tokens, table):  # sum_j l_j * X x_j, with this sentence's own length J
        n = int((tokens != 0).sum())
        weights = position_encoding(torch.tensor(n), tokens.shape[0], d)
        return (weights * table.weight[tokens]).sum(0)

    tables, T = net.embeddings, net.temporal
    u = bag(question, tables[0])  # B = A_1
    for k in range(1, net.hops + 1):
        # A_k = C_{k-1} (A_1 = B); the temporal index counts back from the last sentence
        m = torch.stack([bag(sentences[i], tables[k - 1]) + T[k - 1, S - 1 - i] for i in range(S)])
        c = torch.stack([bag(sentences[i], tables[k]) + T[k, S - 1 - i] for i in range(S)])
        p = torch.softmax(m @ u, 0)
        u = u + p @ c
    expected = tables[net.hops].weight @ u  # W^T = C_K

    logits, _ = net(sentences[None], question[None])
    torch.testing.assert_close(logits[0], expected)
