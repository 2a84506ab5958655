"""The story world: a bAbI-style story generator (Weston et al., 2015), the bAbI text format,
and the word-level vocabulary shared by every bundled model."""

from stmem_viz.data.babi import infer_task, parse_story_text, read_babi, write_babi
from stmem_viz.data.vocab import (
    BOS,
    EOS,
    PAD,
    UNK,
    EncodedStory,
    Vocabulary,
    default_vocabulary,
    encode_story,
    tokenize,
)
from stmem_viz.data.world import (
    ACTORS,
    LOCATIONS,
    OBJECTS,
    TASKS,
    Question,
    Story,
    generate_stories,
    generate_story,
    generate_story_series,
)

__all__ = [
    "ACTORS",
    "BOS",
    "EOS",
    "LOCATIONS",
    "OBJECTS",
    "PAD",
    "TASKS",
    "UNK",
    "EncodedStory",
    "Question",
    "Story",
    "Vocabulary",
    "default_vocabulary",
    "encode_story",
    "generate_stories",
    "generate_story",
    "generate_story_series",
    "infer_task",
    "parse_story_text",
    "read_babi",
    "tokenize",
    "write_babi",
]
