"""The story generator against an independent replay of its sentences (bAbI tasks 1-3,
Weston et al., 2015)."""

from __future__ import annotations

import random
import re

import pytest

from stmem_viz import StmemError
from stmem_viz.data import (
    ACTORS,
    LOCATIONS,
    OBJECTS,
    Story,
    generate_stories,
    generate_story,
    generate_story_series,
)

MOVE = re.compile(r"^(\w+) (?:went|journeyed|travelled|moved|went back) to the (\w+)\.$")
GET = re.compile(r"^(\w+) (?:got|grabbed|took|picked up) the (\w+)( there)?\.$")
DROP = re.compile(r"^(\w+) (?:dropped|put down|left|discarded) the (\w+)( there)?\.$")


class Tracker:
    """Reads the sentences one by one and remembers what each fact established."""

    def __init__(self) -> None:
        self.where: dict[str, tuple[str, int]] = {}  # actor -> (location, sentence id)
        self.holding: dict[str, tuple[str, int]] = {}  # object -> (actor, get id)
        self.floor: dict[str, tuple[str, int, int]] = {}  # object -> (location, drop id, move id)
        self.arrivals: dict[tuple[str, str], tuple[str, tuple[int, ...]]] = {}

    def read(self, i: int, sentence: str) -> None:
        if m := MOVE.match(sentence):
            actor, place = m.groups()
            assert actor in ACTORS and place in LOCATIONS
            for obj, (holder, got) in self.holding.items():
                if holder == actor:
                    before, before_id = self.where[actor]
                    self.arrivals[obj, place] = (before, (got, before_id, i))
            self.where[actor] = (place, i)
        elif m := GET.match(sentence):
            actor, obj = m.group(1), m.group(2)
            assert actor in self.where, f"{actor} gets {obj} without a known location"
            assert obj not in self.holding, f"{obj} is taken while already held"
            if obj in self.floor:
                assert self.floor[obj][0] == self.where[actor][0], "get where the object is not"
            self.holding[obj] = (actor, i)
            self.floor.pop(obj, None)
        elif m := DROP.match(sentence):
            actor, obj = m.group(1), m.group(2)
            assert self.holding.get(obj, ("",))[0] == actor, f"{actor} drops what they lack"
            del self.holding[obj]
            place, move_id = self.where[actor]
            self.floor[obj] = (place, i, move_id)
        else:
            raise AssertionError(f"unexpected sentence: {sentence}")

    def answer(self, question: str) -> tuple[str, tuple[int, ...]]:
        if m := re.fullmatch(r"Where is (\w+)\?", question):
            place, move_id = self.where[m.group(1)]
            return place, (move_id,)
        if m := re.fullmatch(r"Where is the (\w+)\?", question):
            obj = m.group(1)
            if obj in self.holding:
                actor, got = self.holding[obj]
                place, move_id = self.where[actor]
                return place, (got, move_id)
            place, dropped, move_id = self.floor[obj]
            return place, (dropped, move_id)
        m = re.fullmatch(r"Where was the (\w+) before the (\w+)\?", question)
        assert m is not None, question
        return self.arrivals[m.group(1), m.group(2)]


def replay(story: Story) -> tuple[str, tuple[int, ...]]:
    tracker = Tracker()
    for i, sentence in enumerate(story.sentences, start=1):
        tracker.read(i, sentence)
    return tracker.answer(story.question.text)


@pytest.mark.parametrize("task", [1, 2, 3])
def test_answers_and_supporting_facts_match_an_independent_replay(task):
    stories = generate_stories(task, 300, seed=3, min_sentences=1, max_sentences=25)
    for story in stories:
        assert story.question.task == task
        assert replay(story) == (story.question.answer, story.question.support)
        assert all(1 <= s <= len(story.sentences) for s in story.question.support)


@pytest.mark.parametrize("task", [1, 2, 3])
@pytest.mark.parametrize("distance", [0, 1, 7, 25])
def test_distance_is_exact_and_distractors_keep_the_answer(task, distance):
    rng = random.Random(distance)
    for n_sentences in (3, 10, 20):
        story = generate_story(task, rng, n_sentences=n_sentences, distance=distance)
        assert story.distance == distance
        assert len(story.sentences) >= n_sentences
        assert replay(story) == (story.question.answer, story.question.support)
        # Every prefix that still holds the facts gives the same answer.
        last_fact = max(story.question.support)
        for cut in range(last_fact, len(story.sentences) + 1):
            prefix = Story(story.sentences[:cut], story.question)
            assert replay(prefix) == (story.question.answer, story.question.support)


def test_story_grows_to_hold_the_distance():
    story = generate_story(3, random.Random(0), n_sentences=3, distance=10)
    assert len(story.sentences) == 13 and story.distance == 10


def test_task_one_uses_moves_only_and_later_tasks_mix_actions():
    task1 = " ".join(s for story in generate_stories(1, 50) for s in story.sentences)
    task2 = " ".join(s for story in generate_stories(2, 50) for s in story.sentences)
    assert not any(obj in task1 for obj in OBJECTS)
    assert all(obj in task2 for obj in OBJECTS)


def test_lengths_stay_in_the_requested_range():
    lengths = {len(s.sentences) for s in generate_stories(2, 200, min_sentences=4, max_sentences=9)}
    assert lengths == set(range(4, 10))


def test_same_seed_same_stories_and_different_seeds_differ():
    assert generate_stories(2, 20, seed=5) == generate_stories(2, 20, seed=5)
    assert generate_stories(2, 20, seed=5) != generate_stories(2, 20, seed=6)
    assert generate_stories(1, 20, seed=5) != generate_stories(2, 20, seed=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": 4}, "Task 4"),
        ({"task": 0}, "Task 0"),
        ({"task": 3, "n_sentences": 2}, "at least 3"),
        ({"task": 1, "n_sentences": 0}, "at least 1"),
        ({"task": 1, "distance": -1}, "0 or more"),
    ],
)
def test_impossible_requests_raise_a_user_error(kwargs, message):
    with pytest.raises(StmemError, match=message):
        generate_story(rng=random.Random(0), **kwargs)


def test_empty_length_range_is_a_user_error():
    with pytest.raises(StmemError, match="max_sentences"):
        generate_stories(3, 5, min_sentences=2, max_sentences=2)


@pytest.mark.parametrize("task", [1, 2, 3])
def test_a_series_asks_after_each_sentence_of_one_story(task):
    rng = random.Random(task)
    for _ in range(30):
        series = generate_story_series(task, rng, n_sentences=12)
        full = series[-1].sentences
        assert len({s.question.task for s in series}) == 1
        assert [len(s.sentences) for s in series] == sorted({len(s.sentences) for s in series})
        for story in series:
            assert story.sentences == full[: len(story.sentences)]
            assert replay(story) == (story.question.answer, story.question.support)
    assert len(generate_story_series(1, rng, n_sentences=5)) == 5


def test_a_series_can_ask_several_distinct_questions_after_a_sentence():
    series = generate_story_series(2, random.Random(4), n_sentences=15, per_sentence=3)
    by_length: dict[int, list[str]] = {}
    for story in series:
        by_length.setdefault(len(story.sentences), []).append(story.question.text)
        assert replay(story) == (story.question.answer, story.question.support)
    assert max(len(q) for q in by_length.values()) > 1
    assert all(len(set(q)) == len(q) <= 3 for q in by_length.values())
