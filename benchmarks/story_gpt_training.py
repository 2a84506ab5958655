"""Benchmark: one story-gpt training step with its attention losses, against the same step
without them, and against gathering whole attention maps per question before picking rows.

The attention losses read, for each query token (a question's "?" or a sentence's "."), one row
of a ``[B, H, T, T]`` weight tensor. Indexing that row directly costs ``Q * h * T`` floats;
gathering each query's whole ``[H, T, T]`` map first (how training did it before) costs
``Q * H * T * T``, which on 16 stories of up to 20 sentences is hundreds of megabytes a step.
The script checks that both give the same loss (to 1e-6) and prints the step times and ratios.

Run: ``python benchmarks/story_gpt_training.py [--stories 16] [--repeats 5] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from stmem_viz.data import generate_story_series
from stmem_viz.models import story_gpt as sg


def whole_map_loss(weights, rows, at, target, heads) -> torch.Tensor:
    """The attention loss computed by gathering each query's whole map first."""
    read = weights[rows][:, heads]  # [Q, h, T, T]
    read = read[torch.arange(len(at)), :, at]  # [Q, h, T]
    mass = (read * target[:, None]).sum(-1)
    has_target = target.any(-1)
    return -torch.log(mass[has_target].clamp_min(1e-6)).mean()


def step_time(model, optimizer, batch, weights: tuple[float, ...], repeats: int):
    """Best wall time of a forward, backward and optimiser step, and the last loss."""
    best, loss = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        loss = sg._loss(model, batch, 0.0, *weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        best = min(best, time.perf_counter() - started)
    return best, loss.item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=16, help="stories per step")
    parser.add_argument("--repeats", type=int, default=5, help="steps timed; the best is kept")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tokenizer = sg.build_story_gpt()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the step's cost, weights unchanged
    rng = random.Random(0)
    series = [
        generate_story_series(rng.choice((1, 2, 3)), rng, rng.randint(3, 20), 2)
        for _ in range(args.stories)
    ]
    batch = sg._collate([sg._pack(tokenizer, s) for s in series], tokenizer.pad_token_id, "cpu")
    losses = (3.0, 1.0, 1.0, 1.0)  # support, readout, state, location: the defaults

    sg._supervise(model, ())
    plain, _ = step_time(model, optimizer, batch, (0.0, 0.0, 0.0, 1.0), args.repeats)
    sg._supervise(model, set(sg._supervised_layers(model.config, *losses[:3]).values()))
    direct, direct_loss = step_time(model, optimizer, batch, losses, args.repeats)
    indexed = sg._attention_loss
    sg._attention_loss = whole_map_loss
    try:
        gathered, gathered_loss = step_time(model, optimizer, batch, losses, args.repeats)
    finally:
        sg._attention_loss = indexed
        sg._supervise(model, ())
    if abs(direct_loss - gathered_loss) > 1e-6:
        raise SystemExit(f"losses differ: {direct_loss} vs {gathered_loss}")

    print(
        f"{args.stories} stories, {batch['input_ids'].shape[1]} tokens wide, "
        f"{len(batch['answer_at'])} questions, {len(batch['state_at'])} sentence rows, "
        f"{torch.get_num_threads()} threads (best of {args.repeats})"
    )
    print(f"no attention loss          {plain * 1000:8.1f} ms/step")
    print(f"losses, rows indexed       {direct * 1000:8.1f} ms/step  {direct / plain:5.2f}x plain")
    print(
        f"losses, whole maps first   {gathered * 1000:8.1f} ms/step  {gathered / plain:5.2f}x plain"
    )
    print(f"indexing rows is {gathered / direct:.2f}x faster; losses agree ({direct_loss:.6f})")


if __name__ == "__main__":
    main()
