"""A small simulated world that tells bAbI-style stories and asks questions about them.

The world follows the first three question-answering tasks of bAbI (Weston et al., 2015,
"Towards AI-Complete Question Answering: A Set of Prerequisite Toy Tasks"): four actors walk
between six locations and pick up, carry and drop three objects. Every question carries its
answer and the ids of its supporting facts, both computed by replaying the story.

Supporting facts follow the conventions of the published bAbI files:

- Task 1, "Where is Mary?": the actor's last move.
- Task 2, "Where is the football?": the fact about the object first, then the fact that gives
  its location. If someone holds the object: the last time they got it, then their last move.
  If it lies on the floor: the drop, then the dropper's last move before the drop.
- Task 3, "Where was the football before the kitchen?": the object's answer is the location its
  carrier left when the object last arrived at the kitchen. Facts: the carrier's last get of the
  object before that arrival, the carrier's move to the previous location, the move into the
  kitchen.

Task 1 stories contain moves only, as in bAbI; tasks 2 and 3 mix moves, gets and drops. Objects
start at hidden locations (never stated), so a get is legal only where the object lies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from stmem_viz import StmemError

ACTORS: tuple[str, ...] = ("John", "Mary", "Sandra", "Daniel")
LOCATIONS: tuple[str, ...] = ("bedroom", "kitchen", "garden", "hallway", "bathroom", "office")
OBJECTS: tuple[str, ...] = ("apple", "football", "milk")

MOVE_VERBS: tuple[str, ...] = (
    "went to",
    "journeyed to",
    "travelled to",
    "moved to",
    "went back to",
)
GET_VERBS: tuple[str, ...] = ("got", "grabbed", "took", "picked up")
DROP_VERBS: tuple[str, ...] = ("dropped", "put down", "left", "discarded")

TASKS: tuple[int, ...] = (1, 2, 3)
MIN_SENTENCES: dict[int, int] = {1: 1, 2: 2, 3: 3}
"""The shortest story that can support a question of each task (move; move+get; move+get+move)."""

_KIND_WEIGHTS = {"move": 0.5, "get": 0.3, "drop": 0.2}
_MAX_ATTEMPTS = 2000


@dataclass(frozen=True)
class Question:
    """A question about a story, with its answer and its supporting facts.

    Attributes:
        text: the question, e.g. "Where is Mary?".
        answer: a single word, e.g. "kitchen".
        support: 1-based ids into ``Story.sentences`` of the facts the answer rests on.
        task: the bAbI task number (1, 2 or 3 for generated stories).
    """

    text: str
    answer: str
    support: tuple[int, ...]
    task: int


@dataclass(frozen=True)
class Story:
    """Sentences followed by one question."""

    sentences: tuple[str, ...]
    question: Question

    @property
    def distance(self) -> int:
        """Number of sentences between the last supporting fact and the question."""
        if not self.question.support:
            return len(self.sentences)
        return len(self.sentences) - max(self.question.support)


@dataclass(frozen=True)
class _Action:
    kind: str  # "move", "get" or "drop"
    actor: str
    target: str  # a location for a move, an object for a get or drop


@dataclass(frozen=True)
class _Ask:
    """A question before its answer is known: task 1 asks about an actor, 2 about an object,
    3 about an object and a location."""

    task: int
    subject: str
    location: str | None = None

    def text(self) -> str:
        if self.task == 1:
            return f"Where is {self.subject}?"
        if self.task == 2:
            return f"Where is the {self.subject}?"
        return f"Where was the {self.subject} before the {self.location}?"


class _World:
    """The true state of the world while a story is told."""

    def __init__(self, rng: random.Random) -> None:
        self.actor_at: dict[str, str | None] = dict.fromkeys(ACTORS)
        self.object_at: dict[str, str] = {o: rng.choice(LOCATIONS) for o in OBJECTS}
        self.holder: dict[str, str | None] = dict.fromkeys(OBJECTS)

    def legal_actions(self, with_objects: bool) -> list[_Action]:
        actions = [
            _Action("move", a, loc) for a in ACTORS for loc in LOCATIONS if loc != self.actor_at[a]
        ]
        if not with_objects:
            return actions
        for o in OBJECTS:
            holder = self.holder[o]
            if holder is not None:
                actions.append(_Action("drop", holder, o))
                continue
            for a in ACTORS:
                if self.actor_at[a] is not None and self.actor_at[a] == self.object_at[o]:
                    actions.append(_Action("get", a, o))
        return actions

    def apply(self, action: _Action) -> None:
        if action.kind == "move":
            self.actor_at[action.actor] = action.target
            for o in OBJECTS:
                if self.holder[o] == action.actor:
                    self.object_at[o] = action.target
        elif action.kind == "get":
            self.holder[action.target] = action.actor
        else:
            self.holder[action.target] = None


class _Replay:
    """Reads actions one at a time and answers any question about the story so far."""

    def __init__(self) -> None:
        self.n = 0
        self.actor_at: dict[str, str | None] = dict.fromkeys(ACTORS)
        self.last_move: dict[str, int] = {}
        self.holder: dict[str, str | None] = dict.fromkeys(OBJECTS)
        self.last_get: dict[str, int] = {}
        self.dropped: dict[str, tuple[str, int, int]] = {}  # object -> (location, drop, move)
        # (object, location) -> (previous location, support) of the object's last arrival
        self.arrivals: dict[tuple[str, str], tuple[str, tuple[int, ...]]] = {}

    def read(self, action: _Action) -> None:
        self.n += 1
        i = self.n
        if action.kind == "move":
            previous = self.actor_at[action.actor]
            for o in OBJECTS:
                if self.holder[o] == action.actor:
                    assert previous is not None, "an actor holding an object has a location"
                    support = (self.last_get[o], self.last_move[action.actor], i)
                    self.arrivals[o, action.target] = (previous, support)
            self.actor_at[action.actor] = action.target
            self.last_move[action.actor] = i
        elif action.kind == "get":
            self.holder[action.target] = action.actor
            self.last_get[action.target] = i
            self.dropped.pop(action.target, None)
        else:
            location = self.actor_at[action.actor]
            assert location is not None, "an actor holding an object has a location"
            self.holder[action.target] = None
            self.dropped[action.target] = (location, i, self.last_move[action.actor])

    def answer(self, ask: _Ask) -> tuple[str, tuple[int, ...]] | None:
        """The answer and supporting facts of ``ask``; None if the story does not tell it."""
        if ask.task == 1:
            location = self.actor_at[ask.subject]
            return None if location is None else (location, (self.last_move[ask.subject],))
        if ask.task == 3:
            assert ask.location is not None, "task 3 asks about a location"
            return self.arrivals.get((ask.subject, ask.location))
        owner = self.holder[ask.subject]
        if owner is not None:
            location = self.actor_at[owner]
            assert location is not None, "an actor holding an object has a location"
            return location, (self.last_get[ask.subject], self.last_move[owner])
        if ask.subject in self.dropped:
            location, drop_id, move_id = self.dropped[ask.subject]
            return location, (drop_id, move_id)
        return None


def _answer(actions: list[_Action], ask: _Ask) -> tuple[str, tuple[int, ...]] | None:
    """Replay ``actions`` and answer ``ask``; None if the story does not tell the answer."""
    replay = _Replay()
    for action in actions:
        replay.read(action)
    return replay.answer(ask)


def _possible_asks(task: int) -> list[_Ask]:
    if task == 1:
        return [_Ask(1, a) for a in ACTORS]
    if task == 2:
        return [_Ask(2, o) for o in OBJECTS]
    return [_Ask(3, o, loc) for o in OBJECTS for loc in LOCATIONS]


def _render(action: _Action, rng: random.Random) -> str:
    if action.kind == "move":
        return f"{action.actor} {rng.choice(MOVE_VERBS)} the {action.target}."
    verbs = GET_VERBS if action.kind == "get" else DROP_VERBS
    there = " there" if rng.random() < 0.5 else ""
    return f"{action.actor} {rng.choice(verbs)} the {action.target}{there}."


def _pick(actions: list[_Action], rng: random.Random) -> _Action:
    """Choose an action: first its kind (moves most often), then uniformly within the kind."""
    kinds = sorted({a.kind for a in actions}, key=list(_KIND_WEIGHTS).index)
    kind = rng.choices(kinds, weights=[_KIND_WEIGHTS[k] for k in kinds])[0]
    return rng.choice([a for a in actions if a.kind == kind])


def _random_actions(task: int, n: int, rng: random.Random) -> tuple[_World, list[_Action]]:
    world = _World(rng)
    actions: list[_Action] = []
    for _ in range(n):
        action = _pick(world.legal_actions(with_objects=task != 1), rng)
        world.apply(action)
        actions.append(action)
    return world, actions


def _story_any_distance(task: int, n: int, rng: random.Random) -> tuple[list[_Action], _Ask]:
    """``n`` random actions and a random answerable question about them."""
    for _ in range(_MAX_ATTEMPTS):
        _, actions = _random_actions(task, n, rng)
        asks = [ask for ask in _possible_asks(task) if _answer(actions, ask) is not None]
        if asks:
            return actions, rng.choice(asks)
    raise RuntimeError(f"no answerable task {task} story of {n} sentences was generated")


def _story_at_distance(
    task: int, n_prefix: int, distance: int, rng: random.Random
) -> tuple[list[_Action], _Ask]:
    """A prefix whose last sentence is a supporting fact, then ``distance`` distractors."""
    for _ in range(_MAX_ATTEMPTS):
        world, actions = _random_actions(task, n_prefix - 1, rng)
        finals = []
        for action in world.legal_actions(with_objects=task != 1):
            for ask in _possible_asks(task):
                found = _answer([*actions, action], ask)
                if found is not None and max(found[1]) == n_prefix:
                    finals.append((action, ask, found))
        if not finals:
            continue
        final, ask, expected = rng.choice(finals)
        world.apply(final)
        actions.append(final)
        for _ in range(distance):
            safe = [
                a
                for a in world.legal_actions(with_objects=task != 1)
                if _answer([*actions, a], ask) == expected
            ]
            distractor = _pick(safe, rng)
            world.apply(distractor)
            actions.append(distractor)
        return actions, ask
    raise RuntimeError(f"no task {task} story with a fact at sentence {n_prefix} was generated")


def generate_story(
    task: int, rng: random.Random, n_sentences: int = 10, distance: int | None = None
) -> Story:
    """Tell one story and ask one question of the given bAbI task about it.

    Args:
        task: 1 (single supporting fact), 2 (two facts) or 3 (three facts).
        rng: the source of randomness; the same state gives the same story.
        n_sentences: number of sentences before the question. With ``distance`` set, the story
            is lengthened if it cannot otherwise hold the facts and the distractors.
        distance: if given, exactly this many sentences follow the last supporting fact. They
            are distractors: they neither change the answer nor add a supporting fact.

    Returns:
        The story with its question, answer and supporting fact ids.

    Raises:
        StmemError: unknown task, too few sentences for the task, or a negative distance.

    >>> story = generate_story(1, random.Random(0), n_sentences=4, distance=2)
    >>> story.distance, len(story.sentences)
    (2, 4)
    """
    if task not in TASKS:
        raise StmemError(f"Task {task} is not generated here; choose one of {list(TASKS)}.")
    minimum = MIN_SENTENCES[task]
    if n_sentences < minimum:
        raise StmemError(
            f"A task {task} story needs at least {minimum} sentences; got {n_sentences}."
        )
    if distance is not None and distance < 0:
        raise StmemError(f"The distance must be 0 or more sentences; got {distance}.")

    if distance is None:
        actions, ask = _story_any_distance(task, n_sentences, rng)
    else:
        n_prefix = max(n_sentences - distance, minimum)
        actions, ask = _story_at_distance(task, n_prefix, distance, rng)
    found = _answer(actions, ask)
    assert found is not None, "the chosen question is answerable"
    answer, support = found
    question = Question(text=ask.text(), answer=answer, support=support, task=task)
    sentences = tuple(_render(action, rng) for action in actions)
    return Story(sentences=sentences, question=question)


def generate_story_series(
    task: int, rng: random.Random, n_sentences: int = 10, per_sentence: int = 1
) -> list[Story]:
    """Tell one story and ask a question after every sentence that allows one.

    This is how bAbI files interleave questions with a story. Each returned ``Story`` holds
    the sentences told so far, so all of them are prefixes of the last one; a causal language
    model can read the story once and answer every question (see ``stmem_viz.models.story_gpt``).

    Args:
        task: 1, 2 or 3.
        rng: the source of randomness.
        n_sentences: length of the whole story.
        per_sentence: most questions asked after one sentence (distinct ones, drawn at random
            among those the story so far answers).

    Returns:
        One story per question, shortest first (at least one).

    Raises:
        StmemError: unknown task or too few sentences for the task.
    """
    if task not in TASKS:
        raise StmemError(f"Task {task} is not generated here; choose one of {list(TASKS)}.")
    if n_sentences < MIN_SENTENCES[task]:
        raise StmemError(
            f"A task {task} story needs at least {MIN_SENTENCES[task]} sentences; "
            f"got {n_sentences}."
        )
    asks = _possible_asks(task)
    for _ in range(_MAX_ATTEMPTS):
        _, actions = _random_actions(task, n_sentences, rng)
        sentences = tuple(_render(action, rng) for action in actions)
        replay = _Replay()
        series = []
        for k, action in enumerate(actions, start=1):
            replay.read(action)
            answered = [(ask, replay.answer(ask)) for ask in asks]
            answered = [(ask, found) for ask, found in answered if found is not None]
            if not answered:
                continue
            for ask, (answer, support) in rng.sample(answered, min(per_sentence, len(answered))):
                question = Question(text=ask.text(), answer=answer, support=support, task=task)
                series.append(Story(sentences=sentences[:k], question=question))
        if series:
            return series
    raise RuntimeError(f"no answerable task {task} story of {n_sentences} sentences was generated")


def generate_stories(
    task: int,
    n: int,
    seed: int = 0,
    min_sentences: int = 2,
    max_sentences: int = 20,
    distance: int | None = None,
) -> list[Story]:
    """Tell ``n`` stories of one task with lengths drawn uniformly from a range.

    Args:
        task: 1, 2 or 3.
        n: number of stories.
        seed: seed of the random generator; the same arguments give the same stories.
        min_sentences: shortest story; raised to the task's minimum if below it.
        max_sentences: longest story (before any lengthening needed for ``distance``).
        distance: if given, every story has exactly this many sentences after its last
            supporting fact.

    Returns:
        The stories, in generation order.

    Raises:
        StmemError: unknown task, negative ``n``, or an empty length range.
    """
    if task not in TASKS:
        raise StmemError(f"Task {task} is not generated here; choose one of {list(TASKS)}.")
    if n < 0:
        raise StmemError(f"The number of stories must be 0 or more; got {n}.")
    low = max(min_sentences, MIN_SENTENCES[task])
    if max_sentences < low:
        raise StmemError(
            f"The longest story ({max_sentences} sentences) is shorter than the shortest "
            f"allowed for task {task} ({low}); raise max_sentences."
        )
    rng = random.Random(f"stmem-viz/task{task}/seed{seed}")
    return [generate_story(task, rng, rng.randint(low, max_sentences), distance) for _ in range(n)]
