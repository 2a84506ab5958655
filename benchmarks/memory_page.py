"""How long the Memory page takes to rerun when the step slider moves on a 70-sentence story.

Runs the page headless with ``streamlit.testing.v1.AppTest`` (which reruns the whole script on
every interaction; in a browser only the step fragment reruns, so this is an upper bound). It
times the cold first run of a 70-sentence story (model load, trace, every figure), then, after
a warm-up, several slider moves, and prints the median and maximum milliseconds per move and
their ratio to the cold run.

Usage::

    python benchmarks/memory_page.py [--model bundled:story-entnet] [--moves 12]

Without ``--model`` the bundled story-entnet is used when installed; otherwise an untrained
EntNet of the bundled size (100 dimensions, 20 slots) is built and saved to a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from streamlit.testing.v1 import AppTest

from stmem_viz.data import default_vocabulary
from stmem_viz.models.bundled import list_bundled
from stmem_viz.models.story_models import StoryModel, build_network, save_story_model

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = 70
BUDGET_MS = 300.0


def default_model(folder: Path) -> str:
    """The bundled story-entnet, or an untrained EntNet of the same size saved in ``folder``."""
    if "story-entnet" in list_bundled():
        return "bundled:story-entnet"
    torch.manual_seed(0)
    vocab = default_vocabulary()
    network = build_network("entnet", len(vocab))
    config = {"stmem_family": "entnet", "name": "bench-entnet", "vocab_size": len(vocab)}
    model = StoryModel(network, vocab, config, "bench-entnet", torch.device("cpu"))
    return str(save_story_model(model, folder / "bench-entnet"))


def measure(spec: str, moves: int) -> tuple[float, list[float]]:
    """Cold-run milliseconds and the milliseconds of each timed slider move."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    if not spec.startswith("bundled:"):
        at.session_state["session.trained_models"] = {"bench-entnet": spec}
    at.session_state["memory.model"] = spec
    at.session_state["memory.length"] = SENTENCES
    at.session_state["memory.seed"] = 7
    at.run()

    started = time.perf_counter()
    at.switch_page("pages/memory.py").run()
    cold = (time.perf_counter() - started) * 1000
    if at.exception:
        raise RuntimeError(f"the page failed: {[e.value for e in at.exception]}")
    steps = at.slider(key="memory.step")
    if steps.max != SENTENCES:
        raise RuntimeError(f"expected a {SENTENCES}-sentence story, got {steps.max}")

    for value in (10, 40):  # warm-up: figure code paths, caches of the story
        at.slider(key="memory.step").set_value(value).run()
    times = []
    for i in range(moves):
        value = 1 + (i * 17) % SENTENCES
        started = time.perf_counter()
        at.slider(key="memory.step").set_value(value).run()
        times.append((time.perf_counter() - started) * 1000)
        if at.exception:
            raise RuntimeError(f"the page failed: {[e.value for e in at.exception]}")
    return cold, times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundled:NAME or an EntNet folder")
    parser.add_argument("--moves", type=int, default=12, help="timed slider moves")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        spec = args.model or default_model(Path(tmp))
        cold, times = measure(spec, args.moves)
    median, worst = statistics.median(times), max(times)
    print(f"model: {spec}, story: {SENTENCES} sentences, {torch.get_num_threads()} torch threads")
    print(f"cold first run:     {cold:8.1f} ms")
    print(f"slider move median: {median:8.1f} ms  (max {worst:.1f} ms over {len(times)} moves)")
    print(f"median / cold run:  {median / cold:8.3f}")
    verdict = "within" if median < BUDGET_MS else "OVER"
    print(f"{verdict} the {BUDGET_MS:.0f} ms budget per slider move (median)")
    return 0 if median < BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
