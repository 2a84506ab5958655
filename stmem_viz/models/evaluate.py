"""Question-answering accuracy of the bundled story models on bAbI tasks 1-3.

The tasks are those of Weston et al. (2015), "Towards AI-Complete Question Answering: A Set of
Prerequisite Toy Tasks". Memory networks (Henaff et al., 2017; Sukhbaatar et al., 2015) are
scored here by their most probable answer word; the small Transformer ``story-gpt`` is scored
by :func:`stmem_viz.models.story_gpt.evaluate_story_gpt`.

Stories are generated fresh from ``seed`` (default 12345). Training uses generator seeds of one
million and more (see :mod:`stmem_viz.models.train`), so the two never share a seed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stmem_viz import StmemError
from stmem_viz.data import Story, generate_stories, read_babi
from stmem_viz.models.bundled import bundled_path, is_bundled_spec
from stmem_viz.models.story_models import FAMILIES, StoryModel, load_story_model


def model_folder(model_spec: str | Path) -> Path:
    """The folder of ``bundled:NAME`` or of a path.

    Raises:
        StmemError: no such bundled model or folder.
    """
    if isinstance(model_spec, str) and is_bundled_spec(model_spec):
        return bundled_path(model_spec)
    folder = Path(model_spec).expanduser()
    if not folder.is_dir():
        raise StmemError(f"There is no model folder at {folder}; check the path.")
    return folder


def story_accuracy(model: StoryModel, stories: Sequence[Story], batch_size: int = 256) -> float:
    """Fraction of stories whose most probable answer word is the right one (0 if none)."""
    if not stories:
        return 0.0
    probs = model.answer_probs([(s.sentences, s.question.text) for s in stories], batch_size)
    target = np.array([model.vocab.id(s.question.answer.lower()) for s in stories])
    return float((probs.argmax(-1) == target).mean())


def _task_stories(
    tasks: Sequence[int], n: int, seed: int, babi_file: str | Path | None
) -> dict[int, list[Story]]:
    if babi_file is None:
        return {task: generate_stories(task, n, seed=seed) for task in tasks}
    stories = read_babi(babi_file)
    by_task = {task: [s for s in stories if s.question.task == task][:n] for task in tasks}
    if not any(by_task.values()):
        found = sorted({s.question.task for s in stories})
        raise StmemError(f"{babi_file} has no question of tasks {list(tasks)} (it has {found}).")
    return by_task


def evaluate(
    model_spec: str | Path,
    tasks: Sequence[int] = (1, 2, 3),
    n: int = 1000,
    seed: int = 12345,
    babi_file: str | Path | None = None,
    device: str = "auto",
) -> list[dict]:
    """Accuracy of one model on each task.

    Args:
        model_spec: ``bundled:story-entnet``, ``bundled:story-memn2n``, ``bundled:story-gpt``,
            or a folder holding one of those kinds of model.
        tasks: bAbI task numbers.
        n: stories per task (with ``babi_file``: at most this many of the file's questions).
        seed: generator seed of the test stories.
        babi_file: a bAbI file to score on instead of generated stories.
        device: "auto", "cpu", "cuda", ...

    Returns:
        One dict per task with keys ``model``, ``task``, ``n`` (stories scored) and
        ``accuracy`` (a fraction in [0, 1]). A task absent from ``babi_file`` gets ``n = 0``
        and accuracy 0.

    Raises:
        StmemError: the model cannot be loaded, or the bAbI file holds none of the tasks.
    """
    folder = model_folder(model_spec)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise StmemError(f"{folder} has no config.json; it is not a model folder.")
    try:
        family = json.loads(config_path.read_text()).get("stmem_family", "hf")
    except json.JSONDecodeError as error:
        raise StmemError(f"{config_path} is not valid JSON ({error}).") from error
    by_task = _task_stories(tasks, n, seed, babi_file)
    name = str(model_spec)

    if family in FAMILIES:
        model = load_story_model(folder, device=device)
        return [
            {"model": name, "task": t, "n": len(s), "accuracy": story_accuracy(model, s)}
            for t, s in by_task.items()
        ]
    return _evaluate_gpt(folder, name, tasks, n, seed, babi_file, device)


def _evaluate_gpt(
    folder: Path,
    name: str,
    tasks: Sequence[int],
    n: int,
    seed: int,
    babi_file: str | Path | None,
    device: str,
) -> list[dict]:
    """Load a Hugging Face folder and score it with the story-gpt evaluator."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stmem_viz.models.device import resolve_device
    from stmem_viz.models.story_gpt import evaluate_story_gpt

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise StmemError(
            f"{folder} could not be loaded as a Hugging Face model ({error})."
        ) from error
    model.to(resolve_device(device)).eval()
    rows = evaluate_story_gpt(model, tokenizer, tasks, n, seed, babi_file)
    return [{**row, "model": name} for row in rows]
