"""Reading and writing the bAbI text format (Weston et al., 2015) and parsing typed stories."""

from __future__ import annotations

import pytest

from stmem_viz import StmemError
from stmem_viz.data import generate_stories, parse_story_text, read_babi, write_babi

QA2_SAMPLE = """\
1 Mary moved to the bathroom.
2 Sandra journeyed to the bedroom.
3 Mary got the football there.
4 John went to the kitchen.
5 Mary went back to the kitchen.
6 Mary went back to the garden.
7 Where is the football? \tgarden\t3 6
8 Sandra went back to the office.
9 John moved to the office.
10 Sandra journeyed to the hallway.
11 Daniel went back to the kitchen.
12 Mary dropped the football.
13 John got the milk there.
14 Where is the football? \tgarden\t12 6
1 Mary went to the hallway.
2 Where is Mary? \thallway\t1
"""


def test_each_question_becomes_a_story_with_support_remapped_past_question_lines():
    stories = read_babi(QA2_SAMPLE)
    assert len(stories) == 3
    first, second, third = stories
    assert len(first.sentences) == 6 and first.question.support == (3, 6)
    # Line 12 is the 11th statement, since line 7 was a question.
    assert len(second.sentences) == 12
    assert second.question.support == (11, 6)
    assert second.sentences[10] == "Mary dropped the football."
    assert second.question.answer == "garden" and second.question.text == "Where is the football?"
    assert third.sentences == ("Mary went to the hallway.",)
    assert (first.question.task, third.question.task) == (2, 1)


def test_task_number_comes_from_a_bAbI_file_name(tmp_path):
    path = tmp_path / "qa2_two-supporting-facts_test.txt"
    path.write_text(QA2_SAMPLE)
    assert {s.question.task for s in read_babi(path)} == {2}
    assert read_babi(str(path)) == read_babi(path)


@pytest.mark.parametrize("task", [1, 2, 3])
def test_write_then_read_gives_the_same_stories(task):
    stories = generate_stories(task, 50, seed=1, max_sentences=15)
    assert read_babi(write_babi(stories)) == stories


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("1 Mary went to the hallway.\nMary went home.\n", "Line 2"),
        ("1 Mary went to the hallway.\n3 John went to the office.\n", "Line 2"),
        ("1 Mary went to the hallway.\n2 Where is Mary?\thallway\tx\n", "Line 2"),
        ("1 Mary went to the hallway.\n2 Where is Mary?\thallway\t5\n", "Line 2"),
        ("1 Mary went to the hallway.\n2 Where is Mary?\t\t1\n", "Line 2"),
        ("\n\n1 Where is Mary?\thallway\t1\n", "Line 3"),
    ],
)
def test_malformed_files_name_the_line(text, line):
    with pytest.raises(StmemError, match=line):
        read_babi(text)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(StmemError, match="does not exist"):
        read_babi(tmp_path / "qa1_missing.txt")


def test_plain_text_story_splits_sentences_and_question():
    text = (
        "Mary went to the kitchen.\n\nJohn went to the garden. Mary got the milk.\nWhere is Mary?\n"
    )
    sentences, question = parse_story_text(text)
    assert sentences == [
        "Mary went to the kitchen.",
        "John went to the garden.",
        "Mary got the milk.",
    ]
    assert question == "Where is Mary?"


def test_earlier_questions_are_left_out_of_a_plain_story():
    sentences, question = parse_story_text(
        "Mary went to the kitchen.\nWhere is Mary?\nWhere is John?"
    )
    assert sentences == ["Mary went to the kitchen."] and question == "Where is John?"


def test_babi_text_story_uses_the_last_question_of_its_story():
    sentences, question = parse_story_text(QA2_SAMPLE)
    assert sentences == ["Mary went to the hallway."] and question == "Where is Mary?"
    sentences, question = parse_story_text("\n".join(QA2_SAMPLE.splitlines()[:14]))
    assert len(sentences) == 12 and question == "Where is the football?"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("  \n\t\n", "empty"),
        ("Mary went to the kitchen.\nJohn went to the garden.", "no question"),
        ("1 Mary went to the kitchen.\n2 John went to the garden.", "no question"),
        ("Where is Mary?\nMary went to the kitchen.", "must come last"),
        ("1 Where is Mary?\thallway\t\n2 Mary went to the kitchen.", "must come last"),
    ],
)
def test_unusable_typed_text_is_a_user_error(text, message):
    with pytest.raises(StmemError, match=message):
        parse_story_text(text)
