"""The Recurrent Entity Network follows the equations of Henaff et al. (2017)."""

import torch
import torch.nn.functional as F

from stmem_viz.models.entnet import EntNet, normalise

VOCAB = 12


def tiny_entnet(seed: int = 0) -> EntNet:
    torch.manual_seed(seed)
    net = EntNet(VOCAB, dim=4, slots=3, max_words=6)
    with torch.no_grad():  # move every parameter off its initial value so no term hides
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
        net.embedding.weight[0].zero_()
    return net


def tiny_story() -> tuple[torch.Tensor, torch.Tensor]:
    sentences = torch.tensor([[2, 3, 4, 0], [5, 6, 0, 0], [7, 3, 8, 9]])  # (S=3, W=4)
    question = torch.tensor([10, 2, 11])
    return sentences, question


def test_one_update_step_matches_the_papers_equations():
    net = tiny_entnet()
    sentences, _ = tiny_story()
    E, f = net.embedding.weight, net.story_mask

    # s = sum_i f_i * e_i
    tokens = sentences[0]
    s = sum(f[i] * E[tokens[i]] for i in range(len(tokens)))
    h = net.keys.detach().clone()  # h_j starts at w_j
    w = net.keys

    def phi(x, act):
        return torch.where(x >= 0, x, act.weight * x)

    expected_gates, expected_c, expected_h = [], [], []
    for j in range(3):
        g = torch.sigmoid(s @ h[j] + s @ w[j])
        c = phi(net.U.weight @ h[j] + net.V.weight @ w[j] + net.W.weight @ s, net.candidate_act)
        new = h[j] + g * c
        expected_gates.append(g)
        expected_c.append(c)
        expected_h.append(new / new.norm())

    step = net.step(net.initial_slots(1), net.encode_story(sentences[None, :1])[:, 0])
    torch.testing.assert_close(step.gates[0], torch.stack(expected_gates))
    torch.testing.assert_close(step.candidates[0], torch.stack(expected_c))
    torch.testing.assert_close(step.slots[0], torch.stack(expected_h))


def test_read_out_matches_the_papers_equations():
    net = tiny_entnet(1)
    sentences, question = tiny_story()
    slots = net.run(sentences[None])[0]  # (N, D)
    q = sum(net.question_mask[i] * net.embedding.weight[question[i]] for i in range(3))

    p = torch.softmax(slots @ q, dim=0)
    u = (p[:, None] * slots).sum(0)
    x = q + net.H.weight @ u
    y = net.R.weight @ torch.where(x >= 0, x, net.output_act.weight * x)

    logits = net(sentences[None], question[None])[0]
    torch.testing.assert_close(logits, y)


def test_slots_have_unit_norm_and_gates_lie_strictly_between_0_and_1():
    net = tiny_entnet(2)
    sentences, question = tiny_story()
    trace = net.trace(sentences, question)
    norms = torch.from_numpy(trace.slots_after).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(3, 3))
    assert (trace.gates > 0).all() and (trace.gates < 1).all()


def test_trace_equals_running_the_model_step_by_step():
    net = tiny_entnet(3)
    sentences, question = tiny_story()
    trace = net.trace(sentences, question)

    slots = net.initial_slots(1)
    for t in range(sentences.shape[0]):
        before = slots
        step = net.step(slots, net.encode_story(sentences[None, t : t + 1])[:, 0])
        slots = step.slots
        torch.testing.assert_close(torch.from_numpy(trace.slots_before[t]), before[0].detach())
        torch.testing.assert_close(torch.from_numpy(trace.gates[t]), step.gates[0].detach())
        torch.testing.assert_close(torch.from_numpy(trace.slots_after[t]), slots[0].detach())

    # the trace's final answer is the batched forward pass's answer
    probs = F.softmax(net(sentences[None], question[None])[0], -1).detach()
    torch.testing.assert_close(torch.from_numpy(trace.answer_probs), probs)


def test_slots_after_are_normalised_gated_candidates_added_to_slots_before():
    net = tiny_entnet(4)
    sentences, question = tiny_story()
    trace = net.trace(sentences, question)
    before, gates = torch.from_numpy(trace.slots_before), torch.from_numpy(trace.gates)
    candidates = torch.from_numpy(trace.candidates)
    expected = normalise(before + gates[..., None] * candidates)
    torch.testing.assert_close(torch.from_numpy(trace.slots_after), expected)
    torch.testing.assert_close(torch.from_numpy(trace.slots_before[1:]), expected[:-1])


def test_padding_sentences_leave_the_slots_untouched():
    net = tiny_entnet(5)
    sentences, question = tiny_story()
    padded = torch.cat([sentences, torch.zeros(2, 4, dtype=torch.long)])[None]
    torch.testing.assert_close(net.run(padded), net.run(sentences[None]))


def test_answer_after_each_sentence_equals_asking_each_prefix():
    net = tiny_entnet(6)
    sentences, question = tiny_story()
    by_prefix = net.answer_after_each_sentence(sentences, question)
    for t in range(sentences.shape[0]):
        logits = net(sentences[None, : t + 1], question[None])[0]
        torch.testing.assert_close(by_prefix[t], F.softmax(logits, -1).detach())


def test_silenced_slots_get_no_read_attention_and_change_the_answer():
    net = tiny_entnet(7)
    sentences, question = tiny_story()
    full = net.trace(sentences, question)
    silenced = net.trace(sentences, question, silence_slots=[0, 2])
    assert silenced.read_attention[0] == 0 and silenced.read_attention[2] == 0
    assert abs(silenced.read_attention.sum() - 1) < 1e-6
    assert (silenced.slots_after == full.slots_after).all()  # writes are untouched
    assert abs(silenced.answer_probs - full.answer_probs).max() > 1e-4
