"""Read and write the bAbI text format (Weston et al., 2015), and parse stories a user types.

A bAbI file is a sequence of stories. Each line starts with an id; ids restart at 1 when a new
story begins. A statement line is ``ID sentence``; a question line is
``ID question<TAB>answer<TAB>supporting ids``. Supporting ids count question lines too, so they
are remapped here to 1-based indexes into ``Story.sentences``. A story with several questions
yields one ``Story`` per question, each holding the statements seen up to that question.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from stmem_viz import StmemError
from stmem_viz.data.world import ACTORS, LOCATIONS, OBJECTS, Question, Story

_LINE = re.compile(r"^\s*(\d+)\s+(.*?)\s*$")
_TASK_IN_NAME = re.compile(r"qa(\d+)_")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def infer_task(question: str) -> int:
    """The bAbI task (1, 2 or 3) a question's form belongs to, or 0 for any other form."""
    words = question.strip().rstrip("?").split()
    lower = [w.lower() for w in words]
    if len(words) == 3 and lower[:2] == ["where", "is"] and words[2] in ACTORS:
        return 1
    if len(words) == 4 and lower[:3] == ["where", "is", "the"] and lower[3] in OBJECTS:
        return 2
    if (
        len(words) == 7
        and lower[:3] == ["where", "was", "the"]
        and lower[3] in OBJECTS
        and lower[4:6] == ["before", "the"]
        and lower[6] in LOCATIONS
    ):
        return 3
    return 0


def _read_source(source: str | Path) -> tuple[str, int | None]:
    """The text of ``source`` and the task number its file name states, if any."""
    if isinstance(source, str) and "\n" in source:
        return source, None
    path = Path(source)
    if not path.is_file():
        raise StmemError(f"The bAbI file {path} does not exist.")
    match = _TASK_IN_NAME.search(path.name)
    return path.read_text(encoding="utf-8"), int(match.group(1)) if match else None


def _parse_support(field: str, line_no: int) -> list[int]:
    try:
        return [int(token) for token in field.split()]
    except ValueError:
        raise StmemError(
            f"Line {line_no}: the supporting facts '{field}' must be whole numbers separated "
            "by spaces."
        ) from None


def read_babi(source: str | Path) -> list[Story]:
    """Read stories in the bAbI text format.

    Args:
        source: a path to a bAbI file, or the text of one (a string holding a newline). A
            file named like ``qa2_two-supporting-facts_train.txt`` sets the task number;
            otherwise it is inferred from the form of each question (0 if unknown).

    Returns:
        One ``Story`` per question line.

    Raises:
        StmemError: the file is missing, or a line is malformed (the message names the line).
    """
    text, file_task = _read_source(source)
    stories: list[Story] = []
    sentences: list[str] = []
    index_of_id: dict[int, int] = {}  # bAbI line id -> 1-based index into sentences
    last_id = 0
    for line_no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        match = _LINE.match(raw)
        if match is None:
            raise StmemError(
                f"Line {line_no} does not start with a sentence id: '{raw.strip()[:60]}'."
            )
        line_id, body = int(match.group(1)), match.group(2)
        if line_id == 1:
            sentences, index_of_id = [], {}
        elif line_id != last_id + 1:
            raise StmemError(
                f"Line {line_no}: id {line_id} follows id {last_id}; ids must count up from 1 "
                "within a story."
            )
        last_id = line_id

        if "\t" not in body:
            sentences.append(body)
            index_of_id[line_id] = len(sentences)
            continue
        fields = [f.strip() for f in body.split("\t")]
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise StmemError(
                f"Line {line_no}: a question line needs 'question<TAB>answer<TAB>supporting ids'."
            )
        support = []
        for fact in _parse_support(fields[2] if len(fields) > 2 else "", line_no):
            if fact not in index_of_id:
                raise StmemError(
                    f"Line {line_no}: supporting fact {fact} is not a statement earlier in "
                    "this story."
                )
            support.append(index_of_id[fact])
        task = file_task if file_task is not None else infer_task(fields[0])
        question = Question(fields[0], fields[1], tuple(support), task)
        stories.append(Story(tuple(sentences), question))
    return stories


def write_babi(stories: Iterable[Story]) -> str:
    """Write stories in the bAbI text format, one story (ids from 1) per ``Story``.

    ``read_babi(write_babi(stories)) == stories`` for stories whose sentences hold no tab or
    line break.
    """
    lines = []
    for story in stories:
        for i, sentence in enumerate(story.sentences, start=1):
            lines.append(f"{i} {sentence}")
        q = story.question
        support = " ".join(str(s) for s in q.support)
        lines.append(f"{len(story.sentences) + 1} {q.text} \t{q.answer}\t{support}")
    return "\n".join(lines) + ("\n" if lines else "")


def _is_babi_text(lines: list[str]) -> bool:
    return all(_LINE.match(line) for line in lines)


def parse_story_text(text: str) -> tuple[list[str], str]:
    """Split text a user typed into the story's sentences and its question.

    Two forms are accepted:

    - bAbI format (every line starts with an id): the last question line is the question, and
      the statements of its story before it are the sentences. Its answer and supporting
      ids are ignored.
    - Plain text: sentences, one or more per line, ending with the question (the last
      sentence ending in "?"). Earlier questions are left out of the story.

    Returns:
        The sentences, oldest first, and the question.

    Raises:
        StmemError: the text is empty, holds no question, or continues after the question.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise StmemError(
            "The story is empty: type one sentence per line and end with a question, "
            "e.g. 'Mary went to the kitchen.' then 'Where is Mary?'."
        )
    if _is_babi_text(lines):
        return _parse_babi_lines(lines)

    parts = [p.strip() for line in lines for p in _SENTENCE_END.split(line) if p.strip()]
    questions = [i for i, part in enumerate(parts) if part.endswith("?")]
    if not questions:
        raise StmemError("The story has no question: end it with a line such as 'Where is Mary?'.")
    last = questions[-1]
    if last != len(parts) - 1:
        raise StmemError(
            f"The question '{parts[last]}' must come last; move or remove the sentences after it."
        )
    sentences = [p for i, p in enumerate(parts[:last]) if i not in questions]
    return sentences, parts[last]


def _parse_babi_lines(lines: list[str]) -> tuple[list[str], str]:
    sentences: list[str] = []
    found: tuple[list[str], str] | None = None
    statements_after = 0
    for line in lines:
        match = _LINE.match(line)
        assert match is not None, "checked by _is_babi_text"
        line_id, body = int(match.group(1)), match.group(2)
        if line_id == 1:
            sentences = []
        question = body.split("\t")[0].strip()
        if "\t" in body or question.endswith("?"):
            found = (list(sentences), question)
            statements_after = 0
        else:
            sentences.append(body)
            statements_after += 1
    if found is None:
        raise StmemError(
            "The story has no question: add a line such as '3 Where is Mary?' at the end."
        )
    if statements_after:
        raise StmemError(
            f"The question '{found[1]}' must come last; move or remove the lines after it."
        )
    return found
