"""Benchmark: the ``distance`` experiment on story-gpt with key-value cache reuse against one full
forward per grid point.

Both ways score the same stories at the same grid points; the script prints the largest absolute
difference of the answer probabilities (it must stay below 1e-4) and the speed ratio. It uses
``bundled:story-gpt`` when it is installed, else a freshly initialised model of the same
architecture and size (random weights take exactly as long to run).

Run: ``python benchmarks/forgetting.py [--n 8] [--grid 0,1,2,4,8,16,32,64,128] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stmem_viz.analysis import forgetting as fg
from stmem_viz.models.bundled import list_bundled

TOLERANCE = 1e-4


def story_gpt_subject(folder: Path) -> tuple[fg.Subject, str]:
    """bundled:story-gpt, or an untrained model of its size saved into ``folder``."""
    if "story-gpt" in list_bundled():
        return fg.load_subject("bundled:story-gpt", "cpu"), "bundled:story-gpt"
    from stmem_viz.models.story_gpt import build_story_gpt

    torch.manual_seed(0)
    model, tokenizer = build_story_gpt()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return fg.load_subject(str(folder), "cpu"), "untrained story-gpt (bundled one not installed)"


def timed(function, repeats: int):
    """The result of the last call and the best wall time of ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return result, best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="stories")
    parser.add_argument("--grid", default="0,1,2,4,8,16,32,64,128")
    parser.add_argument("--task", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        subject, name = story_gpt_subject(Path(folder))
        settings = fg.make_settings("distance", args.grid, n=args.n, task=args.task)
        stories, cuts = fg.distance_stories(settings, range(args.n))
        tokenizer = subject.model.tokenizer
        lengths = [
            [len(tokenizer(" ".join(s.sentences[:k]))["input_ids"]) for k in story_cuts]
            for s, story_cuts in zip(stories, cuts, strict=True)
        ]
        naive_tokens = sum(sum(row) for row in lengths)
        cached_tokens = sum(max(row) for row in lengths)
        print(f"model: {name}")
        print(
            f"{args.n} stories x {len(settings.grid)} grid points {list(settings.grid)}; "
            f"longest prompt {max(max(row) for row in lengths)} tokens; "
            f"{args.threads} CPU threads"
        )
        print(
            f"story tokens read: {naive_tokens} one forward per grid point, {cached_tokens} "
            f"cached (ratio {naive_tokens / cached_tokens:.1f}x, the bound on the speed-up "
            "when compute dominates)"
        )

        fg.story_scores(subject, stories[:1], cuts[:1])  # warm-up
        fast, fast_s = timed(lambda: fg.story_scores(subject, stories, cuts), args.repeats)
        slow, slow_s = timed(
            lambda: fg.story_scores(subject, stories, cuts, reuse_cache=False), args.repeats
        )

    fast_prob = np.concatenate([p for p, _ in fast])
    slow_prob = np.concatenate([p for p, _ in slow])
    same_answers = all((a == b).all() for (_, a), (_, b) in zip(fast, slow, strict=True))
    difference = float(np.abs(fast_prob - slow_prob).max())
    print(f"cached prefix + batched probes: {fast_s:.2f} s")
    print(f"one full forward per grid point: {slow_s:.2f} s")
    print(f"speed ratio: {slow_s / fast_s:.1f}x")
    print(f"max abs difference of answer probabilities: {difference:.2e}")
    print(f"same arg-max answers: {same_answers}")
    if difference >= TOLERANCE or not same_answers:
        print(f"FAIL: the two ways disagree (tolerance {TOLERANCE:g})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
