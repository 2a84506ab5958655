"""``stmem-viz trace`` writes a memory network's trace of one story with the documented keys."""

import random

import numpy as np
import pytest
import torch

from stmem_viz.cli import main
from stmem_viz.data import default_vocabulary, generate_story, write_babi
from stmem_viz.models.story_models import StoryModel, build_network, save_story_model

SIZES = {"entnet": {"dim": 8, "slots": 3, "max_words": 12}, "memn2n": {"dim": 6, "hops": 2}}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, str]:
    """A small untrained EntNet and MemN2N saved by the library, by family."""
    root = tmp_path_factory.mktemp("memory_models")
    vocab = default_vocabulary()
    folders = {}
    for family, sizes in SIZES.items():
        torch.manual_seed(0)
        network = build_network(family, len(vocab), sizes)
        config = {"stmem_family": family, "name": f"tiny-{family}", "vocab_size": len(vocab)}
        model = StoryModel(network, vocab, config, f"tiny-{family}", torch.device("cpu"))
        folders[family] = str(save_story_model(model, root / family))
    return folders


@pytest.fixture(scope="module")
def babi_file(tmp_path_factory):
    stories = [generate_story(3, random.Random(i), n_sentences=4 + i) for i in range(3)]
    path = tmp_path_factory.mktemp("stories") / "qa3_test.txt"
    path.write_text(write_babi(stories))
    return path, stories


def test_entnet_trace_has_every_documented_array(model_dirs, babi_file, tmp_path, capsys):
    path, stories = babi_file
    out = tmp_path / "trace.npz"
    assert main(["trace", model_dirs["entnet"], "--story", str(path), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    data = np.load(out, allow_pickle=False)
    s, n, d, v = len(stories[0].sentences), 3, 8, len(default_vocabulary())
    shapes = {
        "sentences": (s,),
        "slots_before": (s, n, d),
        "slots_after": (s, n, d),
        "gates": (s, n),
        "candidates": (s, n, d),
        "read_attention": (n,),
        "answer_probs": (v,),
        "vocabulary": (v,),
    }
    for key, shape in shapes.items():
        assert data[key].shape == shape, key
    assert list(data["sentences"]) == list(stories[0].sentences)
    assert data["answer_probs"].sum() == pytest.approx(1.0, abs=1e-5)


def test_memn2n_trace_of_a_chosen_story(model_dirs, babi_file, tmp_path):
    path, stories = babi_file
    out = tmp_path / "trace.npz"
    argv = ["trace", model_dirs["memn2n"], "--story", str(path), "--index", "2", "--out", str(out)]
    assert main(argv) == 0
    data = np.load(out, allow_pickle=False)
    s = len(stories[2].sentences)
    assert data["hop_attention"].shape == (2, s)
    assert data["answer_probs"].shape == data["vocabulary"].shape
    assert "slots_before" not in data.files


def test_plain_text_story_file(model_dirs, tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("Mary went to the kitchen.\nJohn went to the garden.\nWhere is Mary?\n")
    out = tmp_path / "trace.npz"
    assert main(["trace", model_dirs["entnet"], "--story", str(story), "--out", str(out)]) == 0
    assert np.load(out)["gates"].shape == (2, 3)


@pytest.mark.parametrize(
    "content, message",
    [
        ("Mary went to the kitchen.\n", "no question"),
        ("1 Mary went home.\n5 Where is Mary?\tgarden\t1\n", "ids must count up"),
    ],
)
def test_bad_story_file_exits_2_with_a_message(model_dirs, tmp_path, capsys, content, message):
    story = tmp_path / "bad.txt"
    story.write_text(content)
    out = tmp_path / "trace.npz"
    assert main(["trace", model_dirs["entnet"], "--story", str(story), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("stmem-viz: error:") and message in error
    assert not out.exists()


def test_missing_story_file_and_bad_index_exit_2(model_dirs, babi_file, tmp_path, capsys):
    out = str(tmp_path / "trace.npz")
    missing = str(tmp_path / "none.txt")
    assert main(["trace", model_dirs["entnet"], "--story", missing, "--out", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    path, _ = babi_file
    argv = ["trace", model_dirs["entnet"], "--story", str(path), "--index", "9", "--out", out]
    assert main(argv) == 2
    assert "holds 3 stories" in capsys.readouterr().err
