"""Forgetting curves over input length: how recall falls as more text comes between a fact and
the question about it, with fitted half-lives.

Six experiments, each returning one row per sample and a summary per grid point with 95%
confidence intervals (Wilson score intervals for accuracies, Student t intervals for means):

- ``distance`` (story models): accuracy and answer probability against the number ``d`` of
  distractor sentences between the last supporting fact and the question (bAbI tasks 1-3,
  Weston et al., 2015). One story with the largest ``d`` serves every grid point: its prefixes
  are the shorter stories, so all models and all grid points see the same facts.
- ``depth-length`` (story models): accuracy over story length x depth of the fact, the
  needle-in-a-haystack test of Kamradt (2023, "Needle In A Haystack - Pressure Testing LLMs")
  applied to memory networks. Depth 0% puts the fact first, 100% last.
- ``passkey`` (causal LMs): a fact ("Mary went to the kitchen.") hidden at depth ``p`` in
  filler of ``L`` tokens of this project's story world, then "Where is Mary?"; scored by the
  teacher-forced log-probability of the answer and arg-max exact match (Mohtashami & Jaggi,
  2023, "Landmark Attention", passkey retrieval). The filler names only other actors, so the
  answer is stated once. The fact uses words every bundled vocabulary holds, so the same probe
  runs on the word-level story-gpt and on any BPE model.
- ``copy-gap`` (causal LMs): a random token span X, ``g`` filler tokens, X again. The per-token
  NLL of the second copy minus that of a control whose first span is a different random span
  (same positions, same filler) measures how much of X survives the gap; the induction-head
  copying of Olsson et al. (2022).
- ``position-nll`` (causal LMs): mean NLL at every position of the user's text or of generated
  story text, and the in-context learning score of Olsson et al. (2022, "In-context Learning
  and Induction Heads"): loss at token 500 minus loss at token 50 (scaled down for shorter
  texts, see :func:`icl_positions`).
- ``gate-retention`` (EntNet, Henaff et al., 2017): cosine of a memory slot with itself ``k``
  sentences later, against ``k``.

Every curve is fitted with :func:`stmem_viz.analysis.fits.fit_curve`. Floors ("chance"):

- story and passkey recall (accuracy and answer probability): ``1 / len(LOCATIONS)``, what a
  model gets that knows the answer is one of the six locations but not which.
- copy-gap: the relative copy benefit ``(NLL_control - NLL_copy) / NLL_control`` decays to 0.
- gate-retention: the cosine between the same slot in two unrelated stories at the same step,
  measured on a second story per sample (slots never forget their keys entirely).
- position-nll is not a decay curve and is not fitted; its summary number is the ICL score.

Work is split into chunks of samples (:func:`plan_chunks`, :func:`run_chunk`) so that the app
can run one chunk per rerun and stop between chunks; :func:`run_experiment` runs them all.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from stmem_viz import StmemError
from stmem_viz.analysis.fits import CurveFit, fit_curve
from stmem_viz.analysis.probes import (
    IGNORE,
    Probe,
    score_probes,
    score_probes_full,
    token_nll,
)
from stmem_viz.data import ACTORS, LOCATIONS, TASKS, Story, generate_story
from stmem_viz.data.world import MOVE_VERBS

log = logging.getLogger(__name__)

STORY_CHANCE = 1.0 / len(LOCATIONS)


@dataclass(frozen=True)
class ExperimentSpec:
    """What an experiment runs on, what its grid means and how its curve is fitted.

    Attributes:
        name: the experiment's name on the command line and in tables.
        title: a short human title.
        subjects: "story" (memory networks and causal LMs), "causal" (causal LMs) or
            "entnet" (EntNets only).
        grid_label: what the grid values are.
        default_grid: the grid used when none is given.
        fit_x: the sample column the curve is fitted against (None: not fitted).
        metrics: the columns fitted and plotted, the primary one first.
        binary: which of the columns are 0/1 (Wilson intervals).
        heatmap: whether the experiment has a length x depth heatmap.
        chunk: samples per chunk of work.
    """

    name: str
    title: str
    subjects: str
    grid_label: str
    default_grid: tuple[int, ...]
    fit_x: str | None
    metrics: tuple[str, ...]
    binary: tuple[str, ...]
    heatmap: bool = False
    chunk: int = 4


EXPERIMENTS: dict[str, ExperimentSpec] = {
    spec.name: spec
    for spec in (
        ExperimentSpec(
            "distance",
            "Recall against distractor sentences",
            "story",
            "distractor sentences between the fact and the question",
            (0, 1, 2, 4, 8, 16, 32, 64, 128),
            "distance",
            ("correct", "prob", "nll"),
            ("correct",),
            chunk=8,
        ),
        ExperimentSpec(
            "depth-length",
            "Needle in a haystack: story length x fact depth",
            "story",
            "story lengths in sentences",
            (5, 10, 20, 40, 80),
            "distance",
            ("correct", "prob", "nll"),
            ("correct",),
            heatmap=True,
            chunk=2,
        ),
        ExperimentSpec(
            "passkey",
            "Passkey retrieval: context length x fact depth",
            "causal",
            "context lengths in tokens",
            (64, 128, 256, 512),
            "gap_tokens",
            ("correct", "prob", "nll"),
            ("correct",),
            heatmap=True,
            chunk=2,
        ),
        ExperimentSpec(
            "copy-gap",
            "Copying a span across a gap",
            "causal",
            "filler tokens between the two copies",
            (0, 8, 16, 32, 64, 128, 256),
            "gap",
            ("benefit", "delta_nll", "copy_accuracy"),
            (),
            chunk=4,
        ),
        ExperimentSpec(
            "position-nll",
            "Loss by position and in-context learning score",
            "causal",
            "text length in tokens (the largest value is used)",
            (512,),
            None,
            ("nll",),
            (),
            chunk=4,
        ),
        ExperimentSpec(
            "gate-retention",
            "EntNet slot retention",
            "entnet",
            "lags in sentences",
            (0, 1, 2, 4, 8, 16, 32, 64),
            "lag",
            ("cosine",),
            (),
            chunk=8,
        ),
    )
}

DEFAULT_DEPTHS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Settings:
    """One experiment's parameters (hashable, so results and estimates can be keyed on it).

    Attributes:
        experiment: a key of :data:`EXPERIMENTS`.
        grid: the grid values (see the experiment's ``grid_label``), sorted, unique.
        depths: fact depths for ``depth-length`` and ``passkey`` (0 = start, 1 = end).
        n: samples per grid point.
        seed: seed of every generated story, filler and span.
        task: bAbI task of the stories (``distance``, ``depth-length``).
        span: length in tokens of the copied span (``copy-gap``).
        text: the text of ``position-nll``; empty: generated story text, ``n`` samples.
        threshold: recall level that defines the effective length.
        n_boot: bootstrap resamples of each half-life CI.
    """

    experiment: str
    grid: tuple[int, ...] = ()
    depths: tuple[float, ...] = DEFAULT_DEPTHS
    n: int = 20
    seed: int = 0
    task: int = 1
    span: int = 16
    text: str = ""
    threshold: float = 0.85
    n_boot: int = 200

    @property
    def spec(self) -> ExperimentSpec:
        return EXPERIMENTS[self.experiment]

    @property
    def n_samples(self) -> int:
        """Samples to draw: ``n``, or one for a user text in ``position-nll``."""
        return 1 if self.experiment == "position-nll" and self.text.strip() else self.n


def make_settings(experiment: str, grid: Sequence[int] | str | None = None, **options) -> Settings:
    """Check and normalise experiment parameters.

    Args:
        experiment: a key of :data:`EXPERIMENTS`.
        grid: grid values, a comma-separated string, or None for the default grid.
        **options: other :class:`Settings` fields.

    Raises:
        StmemError: unknown experiment, unparseable or out-of-range grid, bad depths, n, task.
    """
    if experiment not in EXPERIMENTS:
        raise StmemError(
            f"Unknown experiment '{experiment}'; choose one of {', '.join(EXPERIMENTS)}."
        )
    spec = EXPERIMENTS[experiment]
    values = spec.default_grid if grid is None or grid == "" else grid
    values = (
        parse_grid(values) if isinstance(values, str) else tuple(sorted({int(v) for v in values}))
    )
    if not values:
        raise StmemError("The grid is empty; give at least one value, e.g. 0,1,2,4.")
    minimum = {"depth-length": 1, "passkey": 8, "position-nll": 8}.get(experiment, 0)
    if values[0] < minimum:
        raise StmemError(f"Grid values for {experiment} must be at least {minimum}.")
    depths = tuple(sorted({float(d) for d in options.pop("depths", DEFAULT_DEPTHS)}))
    if not depths or depths[0] < 0 or depths[-1] > 1:
        raise StmemError("Depths must lie between 0 (start) and 1 (end), e.g. 0,0.5,1.")
    settings = Settings(experiment, values, depths, **options)
    if settings.n < 1:
        raise StmemError(f"Samples per grid point must be at least 1; got {settings.n}.")
    if settings.task not in TASKS:
        raise StmemError(f"Task {settings.task} is not generated; choose one of {list(TASKS)}.")
    if settings.span < 1:
        raise StmemError("The copied span needs at least one token.")
    return settings


def parse_grid(text: str) -> tuple[int, ...]:
    """``"0,1,2,4"`` (commas or spaces) -> ``(0, 1, 2, 4)``, sorted and unique.

    Raises:
        StmemError: a value is not a whole number of 0 or more.
    """
    values = []
    for part in text.replace(",", " ").split():
        try:
            value = int(part)
        except ValueError:
            raise StmemError(
                f"Could not read '{part}' in the grid '{text}'; write whole numbers separated "
                "by commas, e.g. 0,1,2,4,8."
            ) from None
        if value < 0:
            raise StmemError(f"Grid values must be 0 or more; got {value}.")
        values.append(value)
    if not values:
        raise StmemError("The grid is empty; give at least one value, e.g. 0,1,2,4.")
    return tuple(sorted(set(values)))


def parse_depths(text: str) -> tuple[float, ...]:
    """``"0,0.5,1"`` or percentages ``"0,50,100"`` -> fractions.

    Raises:
        StmemError: a value is not a number between 0 and 100.
    """
    try:
        values = [float(p) for p in text.replace(",", " ").split()]
    except ValueError:
        raise StmemError(
            f"Could not read the depths '{text}'; write e.g. 0,25,50,75,100."
        ) from None
    if not values:
        raise StmemError("Give at least one depth, e.g. 0,50,100.")
    if max(values) > 1:
        values = [v / 100 for v in values]
    if min(values) < 0 or max(values) > 1:
        raise StmemError("Depths must lie between 0% and 100%.")
    return tuple(sorted(set(values)))


# ---------------------------------------------------------------------------------------------
# Models under test


@dataclass
class Subject:
    """A model under test.

    Attributes:
        name: the spec it was loaded from (shown in tables and legends).
        kind: "entnet", "memn2n" or "causal-lm".
        model: a :class:`~stmem_viz.models.story_models.StoryModel` or a
            :class:`~stmem_viz.models.hf.LoadedModel`.
    """

    name: str
    kind: str
    model: Any


def subject_kind(spec: str) -> str:
    """ "entnet", "memn2n" or "causal-lm" for a spec, without loading weights."""
    from stmem_viz.models.bundled import bundled_path, is_bundled_spec

    folder = bundled_path(spec) if is_bundled_spec(spec) else Path(spec).expanduser()
    config = folder / "config.json"
    if config.is_file():
        try:
            family = json.loads(config.read_text()).get("stmem_family")
        except (OSError, json.JSONDecodeError):
            family = None
        if family in ("entnet", "memn2n"):
            return family
    return "causal-lm"


def load_subject(spec: str, device: str = "auto", dtype: str = "float32") -> Subject:
    """Load a memory network or a causal LM from ``bundled:NAME``, a folder or a hub id.

    Raises:
        StmemError: nothing loadable there, or a Hugging Face model that is not a decoder.
    """
    spec = (spec or "").strip()
    if not spec:
        raise StmemError("Choose at least one model.")
    kind = subject_kind(spec)
    if kind in ("entnet", "memn2n"):
        from stmem_viz.models.story_models import load_story_model

        return Subject(spec, kind, load_story_model(spec, device=device))
    from stmem_viz.models.hf import load_model

    loaded = load_model(spec, device=device, dtype=dtype)
    if loaded.kind != "decoder":
        raise StmemError(
            f"{spec} is an {loaded.kind} model; forgetting experiments need a causal "
            "(decoder-only) language model or a memory network."
        )
    return Subject(spec, "causal-lm", loaded)


def check_subject(settings: Settings, subject: Subject) -> None:
    """Raise if the experiment cannot run on this model.

    Raises:
        StmemError: e.g. passkey on a memory network, gate-retention on a non-EntNet.
    """
    needs = settings.spec.subjects
    if needs == "causal" and subject.kind != "causal-lm":
        raise StmemError(
            f"{settings.experiment} needs a causal language model; {subject.name} is a "
            f"{subject.kind} memory network. Try the distance or depth-length experiment."
        )
    if needs == "entnet" and subject.kind != "entnet":
        raise StmemError(
            f"gate-retention reads EntNet memory slots; {subject.name} is not an EntNet "
            "(try bundled:story-entnet)."
        )


# ---------------------------------------------------------------------------------------------
# Text for causal LMs


def _sample_rng(settings: Settings, sample: int, *extra: object) -> random.Random:
    parts = "/".join(str(p) for p in (settings.experiment, settings.task, settings.seed, sample))
    tail = "/".join(str(p) for p in extra)
    return random.Random(f"stmem-viz/forgetting/{parts}/{tail}")


def filler_sentences(rng: random.Random, n: int, avoid: str | None = None) -> list[str]:
    """``n`` story-world sentences about actors other than ``avoid`` moving between rooms."""
    actors = [a for a in ACTORS if a != avoid]
    return [
        f"{rng.choice(actors)} {rng.choice(MOVE_VERBS)} the {rng.choice(LOCATIONS)}."
        for _ in range(n)
    ]


class TokenText:
    """Tokenise sentence by sentence so that lengths in tokens are exact.

    Each piece is tokenised with a leading space and no special tokens; concatenating pieces
    then equals tokenising the joined text for whitespace-split tokenizers (word-level, GPT-2
    byte-level BPE, SentencePiece with a space marker).
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a", add_special_tokens=True)["input_ids"]
        start = len(full) - len(plain)
        self.specials: list[int] = list(full[:start]) if full[start:] == plain else []

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one instance per loaded model
    def piece(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(" " + text, add_special_tokens=False)["input_ids"])


def _token_text(subject: Subject) -> TokenText:
    loaded = subject.model
    cached = getattr(loaded, "_stmem_token_text", None)
    if cached is None:
        cached = TokenText(loaded.tokenizer)
        loaded._stmem_token_text = cached
    return cached


def _pad_id(loaded) -> int:
    pad = loaded.tokenizer.pad_token_id
    return int(pad) if pad is not None else 0


def _uses_absolute_positions(config) -> bool:
    text = config.get_text_config(decoder=True)
    relative = ("rope_parameters", "rope_theta", "rope_scaling", "alibi", "rotary_dim")
    return not any(getattr(text, k, None) for k in relative)


def _check_length(subject: Subject, n_tokens: int) -> None:
    """Refuse sequences longer than learned absolute position embeddings can hold."""
    loaded = subject.model
    limit = loaded.max_positions
    if limit is None or n_tokens <= limit:
        return
    if _uses_absolute_positions(loaded.model.config):
        raise StmemError(
            f"{subject.name} has learned positions for {limit} tokens, but this grid needs "
            f"{n_tokens}. Lower the largest grid value."
        )
    log.info(
        "%s: %d tokens exceed the %d positions it was built for", subject.name, n_tokens, limit
    )


# ---------------------------------------------------------------------------------------------
# Story experiments: distance and depth-length


@functools.lru_cache(maxsize=4096)
def _distance_story(task: int, seed: int, sample: int, max_distance: int) -> Story:
    rng = random.Random(f"stmem-viz/forgetting/distance/{task}/{seed}/{sample}/{max_distance}")
    prefix = rng.randint(2, 6)
    return generate_story(task, rng, n_sentences=prefix + max_distance, distance=max_distance)


@functools.lru_cache(maxsize=8192)
def _depth_story(task: int, seed: int, sample: int, length: int, depth: float) -> Story:
    rng = random.Random(f"stmem-viz/forgetting/depth/{task}/{seed}/{sample}/{length}/{depth}")
    position = 1 + round(depth * (length - 1))  # 1-based sentence of the last supporting fact
    return generate_story(task, rng, n_sentences=length, distance=length - position)


def distance_stories(
    settings: Settings, samples: Sequence[int]
) -> tuple[list[Story], list[list[int]]]:
    """The stories of the ``distance`` experiment and, for each, the sentences kept per grid
    point: one story with the largest distance serves every grid point through its prefixes."""
    dmax = max(settings.grid)
    stories = [_distance_story(settings.task, settings.seed, i, dmax) for i in samples]
    cuts = [[max(s.question.support) + d for d in settings.grid] for s in stories]
    return stories, cuts


def story_scores(
    subject: Subject,
    stories: Sequence[Story],
    cuts: Sequence[Sequence[int]],
    reuse_cache: bool = True,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Answer each story's question after each of its cuts.

    Args:
        subject: a memory network or a causal LM.
        stories: the stories.
        cuts: for each story, numbers of sentences kept (the question follows them).
        reuse_cache: causal LMs only: run each story once and probe its prefixes from the
            key-value cache (False: one full forward per story and cut, the slow reference).

    Returns:
        For each story, ``(prob [G], correct [G])``: probability of the answer (for a causal
        LM, of all its tokens) and whether it is the arg-max.
    """
    if subject.kind == "causal-lm":
        return _lm_story_scores(subject, stories, cuts, reuse_cache)
    model = subject.model
    out = []
    if subject.kind == "entnet":
        for story, story_cuts in zip(stories, cuts, strict=True):
            probs = model.answer_after_each_sentence(story.sentences, story.question.text)
            rows = probs[np.asarray(story_cuts) - 1]  # [G, V]
            out.append(_pick_answer(model, rows, story.question.answer))
        return out
    flat = [
        (story.sentences[:k], story.question.text)
        for story, story_cuts in zip(stories, cuts, strict=True)
        for k in story_cuts
    ]
    probs = model.answer_probs(flat)  # [sum G, V]
    start = 0
    for story, story_cuts in zip(stories, cuts, strict=True):
        rows = probs[start : start + len(story_cuts)]
        start += len(story_cuts)
        out.append(_pick_answer(model, rows, story.question.answer))
    return out


def _pick_answer(model, probs: np.ndarray, answer: str) -> tuple[np.ndarray, np.ndarray]:
    target = model.vocab.id(answer.lower())
    return probs[:, target].astype(np.float64), probs.argmax(-1) == target


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _lm_story_scores(subject, stories, cuts, reuse_cache=True):
    from stmem_viz.models.story_gpt import format_prompt

    loaded = subject.model
    tokenizer = loaded.tokenizer
    text = _token_text(subject)
    prefixes, probes = [], []
    for story, story_cuts in zip(stories, cuts, strict=True):
        prompts = [format_prompt(story.sentences[:k], story.question.text) for k in story_cuts]
        ids = [list(row) for row in tokenizer(prompts)["input_ids"]]
        answer = list(text.piece(story.question.answer.lower()))
        shared = max(ids, key=len)
        _check_length(subject, len(shared) + len(answer))
        group = []
        for prompt_ids in ids:
            sequence = prompt_ids + answer
            cut = min(_common_prefix(prompt_ids, shared), len(prompt_ids) - 1)
            targets = [
                t if i >= len(prompt_ids) else IGNORE
                for i, t in enumerate(sequence[cut + 1 :], start=cut + 1)
            ]
            group.append(Probe(cut, tuple(sequence[cut:-1]), tuple(targets)))
        prefixes.append(shared)
        probes.append(group)
    score = score_probes if reuse_cache else score_probes_full
    scores = score(loaded.model, prefixes, probes, pad_id=_pad_id(loaded))
    prob, correct = np.exp(scores.total_logprob()), scores.all_match()
    out, start = [], 0
    for group in probes:
        out.append((prob[start : start + len(group)], correct[start : start + len(group)]))
        start += len(group)
    return out


def _recall_rows(base: dict, prob: np.ndarray, correct: np.ndarray, grid_rows: list[dict]):
    rows = []
    for extra, p, c in zip(grid_rows, prob, correct, strict=True):
        p = float(p)
        rows.append(
            {**base, **extra, "correct": bool(c), "prob": p, "nll": -math.log(max(p, 1e-300))}
        )
    return rows


def _run_distance(settings: Settings, subject: Subject, samples: Sequence[int]) -> list[dict]:
    stories, cuts = distance_stories(settings, samples)
    rows = []
    for sample, story, (prob, correct) in zip(
        samples, stories, story_scores(subject, stories, cuts), strict=True
    ):
        base = {"sample": sample, "task": settings.task}
        grid_rows = [
            {"distance": d, "n_sentences": max(story.question.support) + d} for d in settings.grid
        ]
        rows += _recall_rows(base, prob, correct, grid_rows)
    return rows


def _run_depth_length(settings: Settings, subject: Subject, samples: Sequence[int]) -> list[dict]:
    cells = [(length, depth) for length in settings.grid for depth in settings.depths]
    stories, meta = [], []
    for sample in samples:
        for length, depth in cells:
            story = _depth_story(settings.task, settings.seed, sample, length, depth)
            stories.append(story)
            meta.append({"sample": sample, "task": settings.task, "length": length, "depth": depth})
    scores = story_scores(subject, stories, [[len(s.sentences)] for s in stories])
    rows = []
    for base, story, (prob, correct) in zip(meta, stories, scores, strict=True):
        extra = {"distance": story.distance, "n_sentences": len(story.sentences)}
        rows += _recall_rows(base, prob, correct, [extra])
    return rows


# ---------------------------------------------------------------------------------------------
# Causal-LM experiments: passkey, copy-gap, position-nll


def _fill_to(text: TokenText, sentences: Sequence[str], budget: int) -> list[tuple[int, ...]]:
    """The longest run of ``sentences`` (as token pieces) that fits in ``budget`` tokens."""
    pieces, used = [], 0
    for sentence in sentences:
        piece = text.piece(sentence)
        if used + len(piece) > budget:
            break
        pieces.append(piece)
        used += len(piece)
    return pieces


def _run_passkey(settings: Settings, subject: Subject, samples: Sequence[int]) -> list[dict]:
    text = _token_text(subject)
    longest = max(settings.grid)
    prefixes, probes, meta = [], [], []
    for sample in samples:
        rng = _sample_rng(settings, sample)
        actor, location = rng.choice(ACTORS), rng.choice(LOCATIONS)
        fact = text.piece(f"{actor} {rng.choice(MOVE_VERBS)} the {location}.")
        question = list(text.piece(f"Where is {actor}?"))
        answer = list(text.piece(location))
        pool = filler_sentences(rng, longest, avoid=actor)  # >= one token per sentence
        for length in settings.grid:
            filler = _fill_to(text, pool, max(length - len(fact), 0))
            for depth in settings.depths:
                at = round(depth * len(filler))
                before = [t for piece in filler[:at] for t in piece]
                after = [t for piece in filler[at:] for t in piece]
                context = [*text.specials, *before, *fact, *after]
                sequence = context + question + answer
                _check_length(subject, len(sequence))
                cut = len(context) + len(question) - 1
                probes.append([Probe(cut, tuple(sequence[cut:-1]), tuple(answer))])
                prefixes.append(sequence[:cut])
                meta.append(
                    {
                        "sample": sample,
                        "length": length,
                        "depth": depth,
                        "gap_tokens": round(length * (1 - depth)),
                        "n_tokens": len(context) - len(text.specials),
                        "tokens_after_fact": len(after),
                    }
                )
    scores = score_probes(subject.model.model, prefixes, probes, pad_id=_pad_id(subject.model))
    prob, correct = np.exp(scores.total_logprob()), scores.all_match()
    return [
        {**m, "correct": bool(c), "prob": float(p), "nll": -float(lp)}
        for m, p, c, lp in zip(meta, prob, correct, scores.total_logprob(), strict=True)
    ]


def _span_vocabulary(subject: Subject) -> np.ndarray:
    """Token ids a random span may use: every id but the special and added ones."""
    tokenizer = subject.model.tokenizer
    size = len(tokenizer)
    excluded = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    return np.array([i for i in range(size) if i not in excluded])


def _run_copy_gap(settings: Settings, subject: Subject, samples: Sequence[int]) -> list[dict]:
    text = _token_text(subject)
    allowed = _span_vocabulary(subject)
    gmax, span = max(settings.grid), settings.span
    prefixes, probes, meta = [], [], []
    for sample in samples:
        rng = _sample_rng(settings, sample)
        picker = np.random.default_rng(rng.randrange(2**32))
        copy, control = (tuple(int(t) for t in picker.choice(allowed, span)) for _ in range(2))
        pieces = [t for s in filler_sentences(rng, gmax + 1) for t in text.piece(s)][:gmax]
        _check_length(subject, len(text.specials) + 2 * span + gmax)
        for first, condition in ((copy, "copy"), (control, "control")):
            prefix = [*text.specials, *first, *pieces]
            group = []
            for gap in settings.grid:
                cut = len(text.specials) + span + gap - 1  # the token before the second copy
                group.append(Probe(cut, (prefix[cut], *copy[:-1]), copy))
                meta.append({"sample": sample, "gap": gap, "condition": condition})
            prefixes.append(prefix)
            probes.append(group)
    scores = score_probes(subject.model.model, prefixes, probes, pad_id=_pad_id(subject.model))
    nll, hits = scores.mean_nll(), np.where(scores.scored, scores.match, False).sum(1) / span
    table = pd.DataFrame(meta).assign(nll=nll, hits=hits)
    copy_rows = table[table.condition == "copy"].reset_index(drop=True)
    control_rows = table[table.condition == "control"].reset_index(drop=True)
    rows = []
    for (_, a), (_, b) in zip(copy_rows.iterrows(), control_rows.iterrows(), strict=True):
        benefit = (b.nll - a.nll) / b.nll if b.nll > 0 else 0.0
        rows.append(
            {
                "sample": int(a["sample"]),
                "gap": int(a.gap),
                "span": span,
                "nll_copy": float(a.nll),
                "nll_control": float(b.nll),
                "delta_nll": float(a.nll - b.nll),
                "benefit": float(benefit),
                "copy_accuracy": float(a.hits),
            }
        )
    return rows


def icl_positions(n_tokens: int) -> tuple[int, int]:
    """Early and late positions of the in-context learning score.

    Olsson et al. (2022) compare the loss at token 500 with the loss at token 50. A text with
    fewer than 501 tokens uses its last position as "late" and a tenth of it as "early", keeping
    the paper's 1:10 ratio. Each loss is the mean over a window of ``max(1, late // 50)``
    positions on either side (clipped to the text) to damp single-token noise.
    """
    late = min(500, n_tokens - 1)
    early = max(1, min(50, late // 10))
    return early, late


def _window_mean(values: np.ndarray, at: int, width: int) -> float:
    low, high = max(0, at - width), min(len(values), at + width + 1)
    chunk = values[low:high]
    chunk = chunk[np.isfinite(chunk)]
    return float(chunk.mean()) if chunk.size else math.nan


def _run_position_nll(settings: Settings, subject: Subject, samples: Sequence[int]) -> list[dict]:
    loaded = subject.model
    text = _token_text(subject)
    length = max(settings.grid)
    sequences = []
    for sample in samples:
        if settings.text.strip():
            ids = list(loaded.tokenizer(settings.text)["input_ids"])[: length + 1]
        else:
            rng = _sample_rng(settings, sample)
            ids = list(text.specials)
            while len(ids) <= length:
                story = generate_story(settings.task, rng, n_sentences=rng.randint(3, 12))
                for sentence in story.sentences:
                    ids += text.piece(sentence)
                ids += text.piece(f"{story.question.text} {story.question.answer}.")
            ids = ids[: length + 1]
        if len(ids) < 3:
            raise StmemError("The text is too short; give at least a sentence.")
        _check_length(subject, len(ids))
        sequences.append(ids)
    nll = token_nll(loaded.model, sequences, pad_id=_pad_id(loaded))  # [n, T-1]
    rows = []
    for sample, values in zip(samples, nll, strict=True):
        n_scored = int(np.isfinite(values).sum())
        early, late = icl_positions(n_scored + 1)
        width = max(1, late // 50)
        icl = _window_mean(values, late - 1, width) - _window_mean(values, early - 1, width)
        for position in range(n_scored):
            rows.append(
                {
                    "sample": sample,
                    "position": position + 1,
                    "nll": float(values[position]),
                    "icl_score": icl,
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------
# EntNet gate retention


def _slot_cosines(slots: np.ndarray, lag: int) -> float:
    """Mean cosine of every slot at step t with itself at step t + lag; slots ``[S, N, D]``."""
    a, b = slots[: len(slots) - lag], slots[lag:]
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return float(((a * b).sum(-1) / np.maximum(norms, 1e-12)).mean())


def _run_gate_retention(settings: Settings, subject: Subject, samples: Sequence[int]) -> list[dict]:
    model = subject.model
    length = max(settings.grid) + 8
    rows = []
    for sample in samples:
        rng = _sample_rng(settings, sample)
        story, other = (generate_story(settings.task, rng, n_sentences=length) for _ in range(2))
        slots = model.trace(story.sentences, story.question.text).slots_after  # [S, N, D]
        unrelated = model.trace(other.sentences, other.question.text).slots_after
        a, b = slots, unrelated[: len(slots)]
        baseline = float(
            (
                (a * b).sum(-1)
                / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
            ).mean()
        )
        for lag in settings.grid:
            rows.append(
                {
                    "sample": sample,
                    "lag": lag,
                    "cosine": _slot_cosines(slots, lag),
                    "baseline": baseline,
                }
            )
    return rows


RUNNERS: dict[str, Callable[[Settings, Subject, Sequence[int]], list[dict]]] = {
    "distance": _run_distance,
    "depth-length": _run_depth_length,
    "passkey": _run_passkey,
    "copy-gap": _run_copy_gap,
    "position-nll": _run_position_nll,
    "gate-retention": _run_gate_retention,
}


# ---------------------------------------------------------------------------------------------
# Chunks, the whole run, and its estimate


@dataclass(frozen=True)
class Chunk:
    """A unit of work: some samples of one model."""

    model: str
    samples: tuple[int, ...]


def plan_chunks(settings: Settings, models: Sequence[str]) -> list[Chunk]:
    """Every chunk of the run, model by model.

    Raises:
        StmemError: no model given.
    """
    if not models:
        raise StmemError("Choose at least one model.")
    size = settings.spec.chunk
    ids = list(range(settings.n_samples))
    return [
        Chunk(model, tuple(ids[i : i + size])) for model in models for i in range(0, len(ids), size)
    ]


@torch.no_grad()
def run_chunk(settings: Settings, subject: Subject, samples: Sequence[int]) -> pd.DataFrame:
    """Run some samples of the experiment on one model.

    Returns:
        One row per sample and grid point, with ``model`` and ``experiment`` columns first.

    Raises:
        StmemError: the experiment does not fit the model (see :func:`check_subject`), or a
            sequence is too long for the model's positions.
    """
    check_subject(settings, subject)
    rows = RUNNERS[settings.experiment](settings, subject, list(samples))
    frame = pd.DataFrame(rows)
    frame.insert(0, "experiment", settings.experiment)
    frame.insert(0, "model", subject.name)
    return frame


def estimate_seconds(settings: Settings, subject: Subject) -> float:
    """Time one sample on ``subject`` and extrapolate to the whole run on that model.

    Stories are cached, so the timed sample's stories are not generated again by the run.
    """
    started = time.perf_counter()
    run_chunk(settings, subject, [0])
    return (time.perf_counter() - started) * settings.n_samples


ProgressFn = Callable[[int, int], bool | None]
"""Called with (chunks done, chunks in total); returning False stops the run."""


def run_experiment(
    settings: Settings,
    models: Sequence[str | Subject],
    device: str = "auto",
    progress: ProgressFn | None = None,
) -> ForgettingResult:
    """Run an experiment on several models (the same samples for each) and fit the curves.

    Args:
        settings: see :func:`make_settings`.
        models: specs or already loaded subjects.
        device: where specs are loaded.
        progress: called after each chunk; return False to stop early (the result then holds
            the chunks done and ``complete`` is False).

    Raises:
        StmemError: bad model or experiment/model mismatch.
    """
    subjects = [m if isinstance(m, Subject) else load_subject(m, device) for m in models]
    for subject in subjects:
        check_subject(settings, subject)
    by_name = {s.name: s for s in subjects}
    chunks = plan_chunks(settings, [s.name for s in subjects])
    frames, complete = [], True
    for i, chunk in enumerate(chunks):
        frames.append(run_chunk(settings, by_name[chunk.model], chunk.samples))
        if progress is not None and progress(i + 1, len(chunks)) is False and i + 1 < len(chunks):
            complete = False
            break
    return build_result(settings, pd.concat(frames, ignore_index=True), complete)


# ---------------------------------------------------------------------------------------------
# Summaries and fits


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson, 1927)."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """95% Student t interval of a mean (the mean itself when there is one value)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    mean = float(values.mean())
    if values.size == 1:
        return mean, mean
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean - half, mean + half


def group_columns(settings: Settings) -> list[str]:
    """The grid columns a summary groups by (after ``model``)."""
    return {
        "distance": ["distance"],
        "depth-length": ["length", "depth"],
        "passkey": ["length", "depth"],
        "copy-gap": ["gap"],
        "position-nll": ["position"],
        "gate-retention": ["lag"],
    }[settings.experiment]


def summarise(settings: Settings, samples: pd.DataFrame, by: Sequence[str] | None = None):
    """Mean and 95% CI of every metric per model and grid point.

    Returns:
        One row per group with ``n`` and ``{metric}_mean``, ``{metric}_low``, ``{metric}_high``
        for each metric (Wilson for 0/1 metrics, t for the others).
    """
    spec = settings.spec
    keys = ["model", *(by if by is not None else group_columns(settings))]
    metrics = [m for m in spec.metrics if m in samples.columns]
    extra = [c for c in ("baseline", "nll_copy", "nll_control", "icl_score") if c in samples]
    rows = []
    for values, group in samples.groupby(keys, sort=True):
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        row["n"] = len(group)
        for metric in metrics:
            column = group[metric].astype(float).to_numpy()
            mean = float(np.nanmean(column)) if np.isfinite(column).any() else math.nan
            if metric in spec.binary:
                low, high = wilson_interval(
                    float(np.nansum(column)), int(np.isfinite(column).sum())
                )
            else:
                low, high = t_interval(column)
            row |= {f"{metric}_mean": mean, f"{metric}_low": low, f"{metric}_high": high}
        for column in extra:
            row[f"{column}_mean"] = float(group[column].astype(float).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def chance_level(settings: Settings, samples: pd.DataFrame, metric: str) -> float:
    """The floor a curve decays to (see the module docstring)."""
    if settings.experiment in ("distance", "depth-length", "passkey"):
        return STORY_CHANCE
    if settings.experiment == "gate-retention":
        return float(samples["baseline"].mean())
    return 0.0


def _fit_frame(settings: Settings, samples: pd.DataFrame, metric: str, model: str):
    x = settings.spec.fit_x
    part = samples[samples.model == model]
    values = part[metric].astype(float).to_numpy()
    keep = np.isfinite(values)
    return part[x].to_numpy(dtype=float)[keep], values[keep]


FIT_METRICS = {"correct", "prob", "benefit", "cosine"}
"""Metrics that are recall-like (high = remembered, decaying to a floor) and so are fitted."""


def fit_models(settings: Settings, samples: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit every recall-like metric of every model.

    Returns:
        ``fits``: one row per (model, metric) with ``half_life`` (NaN when beyond the grid),
        ``half_life_low``, ``half_life_high``, ``effective_length``, ``best_fit``, ``aic_exp``,
        ``aic_power``, ``chance`` and ``starts_at_chance`` (recall at the smallest distance is
        within 0.05 of the floor: there is nothing to forget, so no half-life); and ``fitted``:
        the best fitted curve on a dense grid (``model``, ``metric``, the x column, ``fitted``).
    """
    spec = settings.spec
    rows, curves = [], []
    for model in samples["model"].unique():
        part = samples[samples.model == model]
        base = {
            "model": model,
            "experiment": settings.experiment,
            "n_samples": int(part["sample"].nunique()),
        }
        if spec.fit_x is None:
            icl = part.groupby("sample")["icl_score"].first().to_numpy(dtype=float)
            low, high = t_interval(icl)
            rows.append(
                base
                | {
                    "metric": "icl_score",
                    "icl_score": float(np.nanmean(icl)),
                    "icl_low": low,
                    "icl_high": high,
                }
            )
            continue
        for metric in (m for m in spec.metrics if m in FIT_METRICS):
            x, y = _fit_frame(settings, samples, metric, model)
            if len(np.unique(x)) < 2:
                continue
            chance = chance_level(settings, part, metric)
            fit = _fit(x, y, chance, settings)
            at_chance = bool(y[x == x.min()].mean() - chance <= 0.05)
            rows.append(base | {"metric": metric, "starts_at_chance": at_chance} | fit_record(fit))
            dense = np.unique(np.concatenate([np.linspace(0, x.max(), 200), np.unique(x)]))
            curves.append(
                pd.DataFrame(
                    {
                        "model": model,
                        "metric": metric,
                        spec.fit_x: dense,
                        "fitted": fit.predict(dense),
                    }
                )
            )
    fitted = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return pd.DataFrame(rows), fitted


def _fit(x: np.ndarray, y: np.ndarray, chance: float, settings: Settings) -> CurveFit:
    """:func:`fit_curve`, with no bootstrap for a curve that starts at its floor.

    Such a curve has nothing to forget (its half-life is None) and resampling it only fits
    noise; a bootstrap that overflows (a power-law exponent near 0) also falls back to no CI.
    """
    first = y[x == x.min()].mean()
    n_boot = settings.n_boot if first - chance > 0.05 else 0
    try:
        return fit_curve(x, y, chance, settings.threshold, n_boot, settings.seed)
    except OverflowError:
        log.info("half-life bootstrap overflowed; reporting the fit without a CI")
        return fit_curve(x, y, chance, settings.threshold, 0, settings.seed)


def fit_record(fit: CurveFit) -> dict[str, Any]:
    """The reported numbers of one fit (None becomes NaN: beyond the grid)."""

    def number(value: float | None) -> float:
        return math.nan if value is None else float(value)

    return {
        "half_life": number(fit.half_life),
        "half_life_low": number(fit.half_life_ci[0]),
        "half_life_high": number(fit.half_life_ci[1]),
        "effective_length": number(fit.effective_length),
        "best_fit": fit.best_fit,
        "aic_exp": float(fit.aic_exp),
        "aic_power": float(fit.aic_power),
        "chance": float(fit.chance),
        "grid_max": float(fit.grid_max),
    }


@dataclass
class ForgettingResult:
    """Everything one run produced.

    Attributes:
        settings: what was run.
        samples: one row per sample and grid point.
        summary: per model and grid point, means with 95% CIs.
        fits: per model and metric, half-life with CI, effective length, best fit and AICs.
        fitted: the best fitted curves on a dense grid, for plotting.
        complete: False when the run was stopped before its last chunk.
        distance_summary: ``depth-length`` and ``passkey`` only: the summary against the fitted
            distance (sentences or tokens after the fact); empty otherwise.
    """

    settings: Settings
    samples: pd.DataFrame
    summary: pd.DataFrame
    fits: pd.DataFrame
    fitted: pd.DataFrame
    complete: bool = True
    distance_summary: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def primary_metric(self) -> str:
        return self.settings.spec.metrics[0]

    def json_lines(self) -> list[dict[str, Any]]:
        """One record per model for the primary metric (``icl_score`` for position-nll)."""
        metric = "icl_score" if self.settings.spec.fit_x is None else self.primary_metric
        records = []
        for _, row in self.fits[self.fits.metric == metric].iterrows():
            records.append(
                {
                    "model": row["model"],
                    "experiment": row["experiment"],
                    "metric": metric,
                    "half_life": _none_if_nan(row.get("half_life")),
                    "half_life_ci": [
                        _none_if_nan(row.get("half_life_low")),
                        _none_if_nan(row.get("half_life_high")),
                    ],
                    "effective_length": _none_if_nan(row.get("effective_length")),
                    "best_fit": row.get("best_fit")
                    if isinstance(row.get("best_fit"), str)
                    else None,
                    "aic_exp": _none_if_nan(row.get("aic_exp")),
                    "aic_power": _none_if_nan(row.get("aic_power")),
                    "starts_at_chance": bool(row.get("starts_at_chance", False)),
                    **(
                        {"icl_score": _none_if_nan(row.get("icl_score"))}
                        if metric == "icl_score"
                        else {}
                    ),
                }
            )
        return records


def _none_if_nan(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def build_result(
    settings: Settings, samples: pd.DataFrame, complete: bool = True
) -> ForgettingResult:
    """Summaries and fits of the samples gathered so far."""
    summary = summarise(settings, samples)
    fits, fitted = fit_models(settings, samples)
    by_distance = pd.DataFrame()
    if settings.spec.heatmap:
        by_distance = summarise(settings, samples, by=[settings.spec.fit_x])
    return ForgettingResult(settings, samples, summary, fits, fitted, complete, by_distance)


def settings_record(settings: Settings) -> dict[str, Any]:
    """The settings as plain JSON-ready values (for file metadata)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
