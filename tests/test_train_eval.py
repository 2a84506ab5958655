"""Training, evaluation, saving and loading of the memory networks, and their bad-input errors."""

import json
import shutil

import numpy as np
import pytest
import torch

from stmem_viz import StmemError
from stmem_viz.data import default_vocabulary, generate_stories
from stmem_viz.models.entnet import EntNetTrace
from stmem_viz.models.evaluate import evaluate, story_accuracy
from stmem_viz.models.memn2n import MemN2NTrace
from stmem_viz.models.story_models import (
    StoryModel,
    build_network,
    load_story_model,
    save_story_model,
)
from stmem_viz.models.train import train

STORY = ["Mary went to the kitchen.", "John journeyed to the garden.", "Mary moved to the office."]


def untrained(family: str, sizes: dict) -> StoryModel:
    torch.manual_seed(0)
    vocab = default_vocabulary()
    network = build_network(family, len(vocab), sizes)
    config = {"stmem_family": family, "name": f"tiny-{family}", "vocab_size": len(vocab), **sizes}
    return StoryModel(network, vocab, config, f"tiny-{family}", torch.device("cpu"))


@pytest.fixture(params=["entnet", "memn2n"])
def saved_model(request, tmp_path):
    sizes = {"dim": 8, "slots": 3} if request.param == "entnet" else {"dim": 8, "hops": 2}
    return save_story_model(untrained(request.param, sizes), tmp_path / request.param)


@pytest.mark.slow
def test_a_short_training_run_lifts_task_1_accuracy_far_above_chance(tmp_path):
    torch.manual_seed(0)
    result = train(
        "story-memn2n",
        tasks=(1,),
        n_stories=1000,
        epochs=6,
        out=tmp_path / "tiny",
        sizes={"dim": 24, "hops": 2, "memory_size": 12},
        lr=0.02,
        max_sentences=8,
        device="cpu",
    )
    stories = generate_stories(1, 300, seed=12345, max_sentences=8)
    assert story_accuracy(result.model, stories) > 0.9  # chance is 1/6: six locations

    record = json.loads((tmp_path / "tiny" / "training.json").read_text())
    assert record["n_stories"] == 1000 and record["tasks"] == [1] and record["wall_time_s"] > 0
    assert 0 <= record["final_val_accuracy"] <= 1
    reloaded = load_story_model(tmp_path / "tiny", device="cpu")
    pairs = [(s.sentences, s.question.text) for s in stories[:20]]
    np.testing.assert_allclose(
        reloaded.answer_probs(pairs), result.model.answer_probs(pairs), rtol=1e-5, atol=1e-6
    )


def test_training_stops_when_the_progress_callback_says_so():
    reports = []

    def stop_at_first(report):
        reports.append(report)
        return False

    result = train(
        "story-entnet",
        tasks=(1,),
        n_stories=64,
        epochs=3,
        sizes={"dim": 8, "slots": 2},
        max_sentences=4,
        device="cpu",
        progress=stop_at_first,
    )
    assert result.stopped_early and len(reports) == 1 and result.history == reports
    assert reports[0].epoch == 1 and 0 <= reports[0].val_accuracy <= 1


def test_unknown_families_and_options_are_user_errors():
    with pytest.raises(StmemError, match="story-entnet"):
        train("story-lstm")
    with pytest.raises(StmemError, match="Unknown story-gpt size"):
        train("story-gpt", n_stories=4, sizes={"slots": 3}, time_limit_s=10)
    with pytest.raises(StmemError, match="Unknown size"):
        train("story-memn2n", n_stories=4, sizes={"slots": 3})


@pytest.mark.parametrize(
    "spec, targets",
    [
        ("bundled:story-entnet", {1: 0.96, 2: 0.92, 3: 0.80}),
        ("bundled:story-memn2n", {1: 0.96, 2: 0.86}),
    ],
)
def test_bundled_memory_networks_reach_their_accuracy_targets(spec, targets):
    rows = evaluate(spec, tasks=tuple(targets), n=200, device="cpu")
    for row in rows:
        assert row["model"] == spec and row["n"] == 200
        assert row["accuracy"] >= targets[row["task"]], row


def test_bundled_models_trace_a_story_with_sentences_and_unknown_words():
    entnet = load_story_model("bundled:story-entnet", device="cpu")
    trace = entnet.trace([*STORY, "Mary zorbled to the attic."], "Where is Mary?")
    assert isinstance(trace, EntNetTrace)
    assert trace.unknown_words == ["zorbled", "attic"]
    assert trace.sentences[-1] == "Mary zorbled to the attic." and trace.gates.shape[0] == 4

    memn2n = load_story_model("bundled:story-memn2n", device="cpu")
    trace = memn2n.trace(STORY, "Where is Mary?", drop_sentences=[2])
    assert isinstance(trace, MemN2NTrace) and trace.unknown_words == []
    assert trace.hop_attention.shape == (memn2n.network.hops, 3)
    assert (trace.hop_attention[:, 2] == 0).all()


@pytest.mark.parametrize("spec", ["bundled:story-entnet", "bundled:story-memn2n"])
def test_answer_after_each_sentence_equals_asking_after_each_prefix(spec):
    model = load_story_model(spec, device="cpu")
    by_prefix = model.answer_after_each_sentence(STORY, "Where is Mary?")
    prefixes = [(STORY[: t + 1], "Where is Mary?") for t in range(len(STORY))]
    np.testing.assert_allclose(by_prefix, model.answer_probs(prefixes), atol=1e-5)
    assert model.answer(STORY, "Where is Mary?") == "office"


def test_unknown_words_are_reported_and_the_model_still_answers(saved_model):
    model = load_story_model(saved_model, device="cpu")
    trace = model.trace(["Mary flew to the moon."], "Where is Mary?")
    assert trace.unknown_words == ["flew", "moon"]
    assert np.isclose(trace.answer_probs.sum(), 1, atol=1e-5)
    assert model.answer_probs([(["Mary flew to the moon."], "Where is Mary?")]).shape == (
        1,
        len(model.vocab),
    )


def test_a_question_about_an_actor_never_mentioned_still_runs(saved_model):
    model = load_story_model(saved_model, device="cpu")
    probs = model.answer_probs([(STORY, "Where is Daniel?")])
    assert np.isfinite(probs).all() and np.isclose(probs.sum(), 1, atol=1e-5)


def test_an_empty_story_or_missing_question_is_a_user_error(saved_model):
    model = load_story_model(saved_model, device="cpu")
    with pytest.raises(StmemError, match="empty"):
        model.answer_probs([([], "Where is Mary?")])
    with pytest.raises(StmemError, match="empty"):
        model.trace(["  ", ""], "Where is Mary?")
    with pytest.raises(StmemError, match="no question"):
        model.trace(STORY, "   ")
    with pytest.raises(StmemError, match="ablation"):
        model.trace(STORY, "Where is Mary?", silence=[0])


def test_out_of_range_ablations_are_user_errors(saved_model):
    model = load_story_model(saved_model, device="cpu")
    name = "silence_slots" if model.family == "entnet" else "drop_sentences"
    with pytest.raises(StmemError, match="0-based"):
        model.trace(STORY, "Where is Mary?", **{name: [99]})


def test_a_corrupt_checkpoint_is_a_user_error(saved_model):
    (saved_model / "model.safetensors").write_bytes(b"\x00garbage\xff" * 100)
    with pytest.raises(StmemError, match="safetensors"):
        load_story_model(saved_model, device="cpu")


def test_a_missing_config_or_weights_file_is_a_user_error(saved_model, tmp_path):
    no_weights = shutil.copytree(saved_model, tmp_path / "no-weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(StmemError, match="model.safetensors"):
        load_story_model(no_weights, device="cpu")
    (saved_model / "config.json").unlink()
    with pytest.raises(StmemError, match="config.json"):
        load_story_model(saved_model, device="cpu")
    with pytest.raises(StmemError, match="no model folder"):
        load_story_model(tmp_path / "nowhere", device="cpu")
    with pytest.raises(StmemError, match="no bundled model"):
        load_story_model("bundled:no-such-model", device="cpu")


def test_weights_that_do_not_fit_the_config_are_a_user_error(saved_model):
    config = json.loads((saved_model / "config.json").read_text())
    config["dim"] = 16
    (saved_model / "config.json").write_text(json.dumps(config))
    with pytest.raises(StmemError, match="do not match"):
        load_story_model(saved_model, device="cpu")


def test_evaluate_scores_a_hugging_face_story_gpt_folder(tmp_path):
    from stmem_viz.models.story_gpt import build_story_gpt

    torch.manual_seed(0)
    model, tokenizer = build_story_gpt()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    rows = evaluate(tmp_path, tasks=(1, 2), n=5, device="cpu")
    assert [(r["task"], r["n"]) for r in rows] == [(1, 5), (2, 5)]
    assert all(r["model"] == str(tmp_path) and 0 <= r["accuracy"] <= 1 for r in rows)
