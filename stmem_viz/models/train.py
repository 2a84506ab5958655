"""One training entry point for the three bundled story models.

``story-entnet`` is a Recurrent Entity Network (Henaff et al., 2017, "Tracking the World State
with Recurrent Entity Networks"), ``story-memn2n`` an end-to-end memory network (Sukhbaatar et
al., 2015, "End-To-End Memory Networks"); both are trained here with Adam on the answer word's
cross-entropy. ``story-gpt``, a small Transformer, is trained by
:func:`stmem_viz.models.story_gpt.train_story_gpt`, to which :func:`train` hands over.

Training data are bAbI tasks 1-3 (Weston et al., 2015): stories from the built-in generator
(lengths drawn uniformly from a range, tasks mixed in every batch), or the real bAbI files
``qa{task}_*_train.txt`` of a folder. Generated training and validation stories use seeds of
one million and more, so evaluation seeds below that (:mod:`stmem_viz.models.evaluate` uses
12345) always give stories the model was not trained on, apart from chance repeats of very
short stories.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stmem_viz import StmemError
from stmem_viz.data import (
    Story,
    Vocabulary,
    default_vocabulary,
    generate_stories,
    read_babi,
    tokenize,
)
from stmem_viz.models.device import resolve_device
from stmem_viz.models.story_models import (
    DEFAULT_SIZES,
    StoryModel,
    build_network,
    collate,
    save_story_model,
)
from stmem_viz.models.training import ProgressFn, TrainProgress, TrainResult

log = logging.getLogger(__name__)

FAMILIES = {"story-entnet": "entnet", "story-memn2n": "memn2n", "story-gpt": "gpt"}
DEFAULT_LR = {"entnet": 0.01, "memn2n": 0.01}
DEFAULT_BATCH_SIZE = {"entnet": 32, "memn2n": 32}
VALIDATION_STORIES = 300
"""Validation stories per task (generated data), or the share of bAbI files held out (10%)."""
GRAD_CLIP = 40.0
"""Gradient norm clipping, the value both papers use."""


def train(
    family: str,
    tasks: Sequence[int] = (1, 2, 3),
    n_stories: int = 10000,
    epochs: int = 20,
    seed: int = 0,
    device: str = "auto",
    out: str | Path | None = None,
    babi_dir: str | Path | None = None,
    sizes: dict[str, int] | None = None,
    progress: ProgressFn | None = None,
    *,
    lr: float | None = None,
    batch_size: int | None = None,
    min_sentences: int | None = None,
    max_sentences: int | None = None,
    time_limit_s: float | None = None,
) -> TrainResult:
    """Train one of the bundled story models.

    Args:
        family: "story-entnet", "story-memn2n" or "story-gpt".
        tasks: bAbI task numbers, trained together.
        n_stories: training stories per task (with ``babi_dir``: at most this many per file).
        epochs: passes over the training stories.
        seed: seed of the story generator and of the weights; must be 0 or more.
        device: "auto", "cpu", "cuda", ...
        out: folder to write the trained model to (None: do not save).
        babi_dir: folder of real bAbI files to train on instead of generated stories.
        sizes: network sizes. ``story-entnet``: ``dim`` (slot size), ``slots`` (number of
            slots), ``max_words`` (longest sentence). ``story-memn2n``: ``dim``, ``hops``,
            ``memory_size`` (sentences kept). ``story-gpt``: see ``train_story_gpt``.
        progress: called after every validation; return False to stop (the best model so far
            is kept).
        lr: Adam learning rate (memory networks: 0.01, annealed along a cosine to 5% of it;
            story-gpt: its own default when None).
        batch_size: stories per step (memory networks: 32).
        min_sentences: shortest generated story (memory networks: 2).
        max_sentences: longest generated story (memory networks: 30).
        time_limit_s: stop after this many seconds of training; for the memory networks the
            learning-rate schedule then follows elapsed time so it still ends annealed.

    Returns:
        A :class:`TrainResult` whose ``model`` is a :class:`StoryModel` (memory networks) or
        whatever ``train_story_gpt`` returns.

    Raises:
        StmemError: unknown family or task, bad sizes, no bAbI files.
    """
    if family not in FAMILIES:
        raise StmemError(f"Unknown model family '{family}'; choose one of {list(FAMILIES)}.")
    if seed < 0:
        raise StmemError(f"The seed must be 0 or more; got {seed}.")
    if n_stories < 1 or epochs < 1:
        raise StmemError("Train on at least one story for at least one epoch.")
    if family == "story-gpt":
        from stmem_viz.models.story_gpt import train_story_gpt

        given = {"lr": lr, "batch_size": batch_size, "min_sentences": min_sentences}
        given |= {"max_sentences": max_sentences, "time_limit_s": time_limit_s}
        return train_story_gpt(
            tasks=tasks,
            n_stories=n_stories,
            epochs=epochs,
            seed=seed,
            device=device,
            out=out,
            babi_dir=babi_dir,
            sizes=sizes,
            progress=progress,
            **{k: v for k, v in given.items() if v is not None},
        )

    kind = FAMILIES[family]
    build_network(kind, 8, sizes)  # checks the size names before any data is made
    arguments = {
        "family": family,
        "tasks": list(tasks),
        "n_stories": n_stories,
        "epochs": epochs,
        "seed": seed,
        "device": device,
        "out": None if out is None else str(out),
        "babi_dir": None if babi_dir is None else str(babi_dir),
        "sizes": {**DEFAULT_SIZES[kind], **(sizes or {})},
        "lr": lr or DEFAULT_LR[kind],
        "batch_size": batch_size or DEFAULT_BATCH_SIZE[kind],
        "min_sentences": 2 if min_sentences is None else min_sentences,
        "max_sentences": 30 if max_sentences is None else max_sentences,
        "time_limit_s": time_limit_s,
    }
    return _train_memory_network(kind, arguments, progress)


def _stories(
    tasks: Sequence[int], n: int, seed: int, babi_dir: str | Path | None, low: int, high: int
) -> tuple[list[Story], list[Story]]:
    """Training and validation stories, tasks in order (shuffled later by the batcher)."""
    train_set: list[Story] = []
    val_set: list[Story] = []
    if babi_dir is None:
        for task in tasks:
            train_set += generate_stories(task, n, 1_000_000 + 1000 * seed, low, high)
            val_set += generate_stories(
                task, VALIDATION_STORIES, 1_000_001 + 1000 * seed, low, high
            )
        return train_set, val_set

    folder = Path(babi_dir)
    for task in tasks:
        files = sorted(folder.glob(f"qa{task}_*_train.txt"))
        if not files:
            raise StmemError(f"No file qa{task}_*_train.txt in {folder}; check the bAbI folder.")
        stories = read_babi(files[0])[:n]
        held = max(1, len(stories) // 10)
        train_set += stories[:-held]
        val_set += stories[-held:]
    return train_set, val_set


def _vocabulary(stories: Sequence[Story]) -> Vocabulary:
    """The default vocabulary, extended with any word the training stories add."""
    vocab = default_vocabulary()
    tokens = []
    for story in stories:
        for text in (*story.sentences, story.question.text, story.question.answer):
            tokens += tokenize(text)
    extra = sorted(set(vocab.unknown(tokens)))
    return Vocabulary(vocab.words + extra) if extra else vocab


def _encode(model: StoryModel, stories: Sequence[Story]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [model.encode(s.sentences, s.question.text)[:2] for s in stories]


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of story indices; stories of similar length share a batch."""
    order = rng.permutation(len(lengths))
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def _accuracy(
    model: StoryModel, encoded: list, answers: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Per-story correctness (bool ``[n]``) of the model's most probable answer."""
    model.network.eval()
    correct = []
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start : start + batch_size]).to(model.device)
        logits = _logits(model, batch)
        target = torch.from_numpy(answers[start : start + batch_size]).to(model.device)
        correct.append((logits.argmax(-1) == target).cpu().numpy())
    model.network.train()
    return np.concatenate(correct)


def _logits(model: StoryModel, batch) -> torch.Tensor:
    out = model.network(batch.sentences, batch.question)
    return out[0] if isinstance(out, tuple) else out


def _train_memory_network(
    kind: str, args: dict[str, Any], progress: ProgressFn | None
) -> TrainResult:
    started = time.perf_counter()
    device = resolve_device(args["device"])
    random.seed(args["seed"])
    torch.manual_seed(args["seed"])
    rng = np.random.default_rng(args["seed"])

    # data
    train_set, val_set = _stories(
        args["tasks"],
        args["n_stories"],
        args["seed"],
        args["babi_dir"],
        args["min_sentences"],
        args["max_sentences"],
    )
    vocab = _vocabulary(train_set)
    network = build_network(kind, len(vocab), args["sizes"]).to(device)
    name = Path(args["out"]).name if args["out"] else f"story-{kind}"
    config = {"stmem_family": kind, "name": name, "vocab_size": len(vocab), **args["sizes"]}
    model = StoryModel(network=network, vocab=vocab, config=config, name=name, device=device)
    train_ids, val_ids = _encode(model, train_set), _encode(model, val_set)
    train_answers = np.array([vocab.id(s.question.answer) for s in train_set], dtype=np.int64)
    val_answers = np.array([vocab.id(s.question.answer) for s in val_set], dtype=np.int64)
    val_tasks = np.array([s.question.task for s in val_set])
    lengths = np.array([ids.shape[0] for ids, _ in train_ids])
    data_s = time.perf_counter() - started
    log.info(
        "%d training and %d validation stories ready in %.1fs", len(train_ids), len(val_ids), data_s
    )

    # optimisation
    optimizer = torch.optim.Adam(network.parameters(), lr=args["lr"])
    steps_per_epoch = math.ceil(len(train_ids) / args["batch_size"])
    total_steps = steps_per_epoch * args["epochs"]
    eval_every = min(steps_per_epoch, 500)
    limit = args["time_limit_s"]
    history: list[TrainProgress] = []
    best = (-1.0, copy.deepcopy(network.state_dict()))
    step, stopped_early, out_of_time, running = 0, False, False, []
    network.train()
    for epoch in range(1, args["epochs"] + 1):
        for idx in _batches(lengths, args["batch_size"], rng):
            elapsed = time.perf_counter() - started
            done = max(step / total_steps, elapsed / limit if limit else 0.0)
            for group in optimizer.param_groups:  # cosine from lr to 5% of lr
                group["lr"] = args["lr"] * (
                    0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(done, 1)))
                )
            batch = collate([train_ids[i] for i in idx]).to(device)
            target = torch.from_numpy(train_answers[idx]).to(device)
            loss = F.cross_entropy(_logits(model, batch), target)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), GRAD_CLIP)
            optimizer.step()
            running.append(loss.item())
            step += 1
            out_of_time = bool(limit) and time.perf_counter() - started > limit
            if step % eval_every and step != total_steps and not out_of_time:
                continue

            # validation point
            accuracy = float(_accuracy(model, val_ids, val_answers).mean())
            report = TrainProgress(
                epoch=epoch,
                step=step,
                total_steps=total_steps,
                loss=float(np.mean(running)),
                val_accuracy=accuracy,
                elapsed_s=time.perf_counter() - started,
            )
            running = []
            history.append(report)
            log.info(
                "epoch %d step %d/%d loss %.4f val %.4f",
                epoch,
                step,
                total_steps,
                report.loss,
                accuracy,
            )
            if accuracy > best[0]:
                best = (accuracy, copy.deepcopy(network.state_dict()))
            if progress is not None and progress(report) is False:
                stopped_early = True
            if stopped_early or out_of_time:
                break
        if stopped_early or out_of_time:
            break

    # keep the best validated weights and record how they were made
    network.load_state_dict(best[1])
    network.eval()
    correct = _accuracy(model, val_ids, val_answers)
    network.eval()
    by_task = {int(t): float(correct[val_tasks == t].mean()) for t in sorted(set(val_tasks))}
    record = {
        **args,
        "vocab_size": len(vocab),
        "steps": step,
        "steps_planned": total_steps,
        "data_time_s": round(data_s, 1),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "final_val_accuracy": float(correct.mean()),
        "val_accuracy_by_task": by_task,
        "val_stories": len(val_ids),
        "stopped_early": stopped_early,
        "stopped_by_time_limit": out_of_time,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    saved = None
    if args["out"]:
        saved = save_story_model(model, Path(args["out"]), record)
    return TrainResult(model=model, history=history, out=saved, stopped_early=stopped_early)
