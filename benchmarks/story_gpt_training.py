"""Benchmark: one story-gpt training step in the story-then-questions layout, against the same
step with a dense masked attention over the whole sequence.

A training sequence is a story read once with about two questions after each sentence; two
thirds of its tokens are question tokens, and no question reads another. The dense step (how
training ran before) gives the stock model the full ``[B, 1, T, T]`` mask: fused sdpa in the
layers without attention losses, explicit softmax(QK^T) in the two supervised layers. The
layout step (:mod:`stmem_viz.models.question_layout`) computes story-to-story attention with
fused sdpa and only the allowed question parts. The script checks that both give the same loss
and gradients, then prints the step times and their ratio.

Run: ``python benchmarks/story_gpt_training.py [--stories 16] [--repeats 7] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.models.llama.modeling_llama import eager_attention_forward

from stmem_viz.data import generate_story_series
from stmem_viz.models import story_gpt as sg
from stmem_viz.models.question_layout import full_mask

DENSE = "stmem_benchmark_dense"
LOSSES = (3.0, 1.0, 1.0, 1.0)  # support, readout, state, location: the training defaults


def dense_attention(module, query, key, value, attention_mask, **kwargs):
    """Eager attention in the supervised layers (weights kept), sdpa elsewhere."""
    kwargs.pop("output_attentions", None)
    if getattr(module, "stmem_supervised", False):
        return eager_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(DENSE, dense_attention)
AttentionMaskInterface.register(DENSE, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def dense_loss(model, batch, mask) -> torch.Tensor:
    """The training loss of ``sg._loss`` computed with the dense masked attention."""
    support, readout, state, location = LOSSES
    layers = sg._supervised_layers(model.config, support, readout, state)
    heads = {name: where(*sg._head_shape(model.config))[1] for name, where in sg.LOSS_HEADS.items()}
    output = model(
        input_ids=batch["input_ids"],
        position_ids=batch["position_ids"],
        attention_mask=mask,
        output_attentions=True,
    )
    logits, s = output.logits, batch["layout"].story
    weights = dict(zip(sorted(set(layers.values())), output.attentions, strict=True))
    loss = torch.nn.functional.cross_entropy(
        logits[batch["answer_rows"], batch["answer_at"]], batch["answer_ids"]
    )
    where = logits[batch["where_rows"], batch["where_at"]]
    loss = loss + location * torch.nn.functional.cross_entropy(where, batch["where_ids"])
    given = {"support": support, "readout": readout, "state": state}
    for name, layer in layers.items():
        rows, at = ("state_rows", "state_at") if name == "state" else ("answer_rows", "answer_at")
        read = weights[layer][..., :s]  # [B, H, T, S]: the targets are story tokens
        loss = loss + given[name] * sg._attention_loss(
            read, batch[rows], batch[at], batch[name], heads[name]
        )
    return loss


def step_time(model, loss_fn, repeats: int) -> tuple[float, float, list[torch.Tensor]]:
    """Median wall time of a forward and backward pass, the loss and the gradients."""
    times, loss = [], None
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        started = time.perf_counter()
        loss = loss_fn()
        loss.backward()
        times.append(time.perf_counter() - started)
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return sorted(times)[len(times) // 2], loss.item(), grads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=16, help="stories per step")
    parser.add_argument("--repeats", type=int, default=7, help="steps timed; the median is kept")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tokenizer = sg.build_story_gpt()
    model.train()
    rng = random.Random(0)
    series = [
        generate_story_series(rng.choice((1, 2, 3)), rng, rng.randint(3, 20), 2)
        for _ in range(args.stories)
    ]
    batch = sg._collate([sg._pack(tokenizer, s) for s in series], tokenizer.pad_token_id, "cpu")
    mask = full_mask(batch["layout"])
    supervised = set(sg._supervised_layers(model.config, *LOSSES[:3]).values())

    sg._supervise(model, supervised)
    layout, layout_value, layout_grads = step_time(
        model, lambda: sg._loss(model, batch, 0.0, *LOSSES), args.repeats
    )
    model.set_attn_implementation(DENSE)
    dense, dense_value, dense_grads = step_time(
        model, lambda: dense_loss(model, batch, mask), args.repeats
    )
    sg._supervise(model, None)
    if abs(layout_value - dense_value) > 1e-4 * abs(dense_value):
        raise SystemExit(f"losses differ: {layout_value} vs {dense_value}")
    worst = max(float((a - b).abs().max()) for a, b in zip(layout_grads, dense_grads, strict=True))
    if worst > 1e-4:
        raise SystemExit(f"gradients differ by {worst}")

    story, width = batch["layout"].story, batch["input_ids"].shape[1]
    print(
        f"{args.stories} stories: {width} tokens a row ({story} story, {width - story} question), "
        f"{len(batch['answer_at'])} questions, {torch.get_num_threads()} threads, "
        f"median of {args.repeats}"
    )
    print(f"dense masked attention     {dense * 1000:8.1f} ms/step")
    print(f"story-then-questions       {layout * 1000:8.1f} ms/step")
    print(
        f"the layout step is {dense / layout:.2f}x faster; losses agree ({layout_value:.6f} vs "
        f"{dense_value:.6f}), gradients to {worst:.1e}"
    )


if __name__ == "__main__":
    main()
