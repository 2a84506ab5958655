"""Forgetting experiments on tiny real models: the numbers each experiment reports must be the
numbers a direct computation gives, and the fast paths must agree with the slow ones."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from stmem_viz import StmemError
from stmem_viz.analysis import forgetting as fg
from stmem_viz.analysis.probes import Probe, score_probes, score_probes_full, token_nll
from stmem_viz.data import default_vocabulary
from stmem_viz.models.story_gpt import answer_probs, build_story_gpt
from stmem_viz.models.story_models import StoryModel, build_network, save_story_model

TINY_GPT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}


@pytest.fixture(scope="module")
def story_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-weight EntNet, MemN2N and story-gpt saved as folders (the real loaders read them)."""
    root = tmp_path_factory.mktemp("story_models")
    vocab = default_vocabulary()
    torch.manual_seed(0)
    sizes = {"entnet": {"dim": 16, "slots": 4}, "memn2n": {"dim": 16, "hops": 2, "memory_size": 6}}
    folders = {}
    for family, size in sizes.items():
        network = build_network(family, len(vocab), size)
        config = {"stmem_family": family}
        model = StoryModel(network, vocab, config, f"tiny-{family}", torch.device("cpu"))
        folders[family] = save_story_model(model, root / family)
    model, tokenizer = build_story_gpt(TINY_GPT)
    model.save_pretrained(root / "gpt")
    tokenizer.save_pretrained(root / "gpt")
    folders["gpt"] = root / "gpt"
    return folders


@pytest.fixture(scope="module")
def subjects(story_dirs, tiny_model_dirs) -> dict[str, fg.Subject]:
    loaded = {name: fg.load_subject(str(path), "cpu") for name, path in story_dirs.items()}
    loaded["gpt2"] = fg.load_subject(str(tiny_model_dirs["gpt2"]), "cpu")
    loaded["llama"] = fg.load_subject(str(tiny_model_dirs["llama"]), "cpu")
    return loaded


def _random_probes(vocab_size: int, seed: int):
    rng = random.Random(seed)
    prefixes = [[rng.randrange(4, vocab_size) for _ in range(n)] for n in (30, 22, 41)]
    probes = []
    for prefix in prefixes:
        group = []
        for cut in (1, 4, 13, len(prefix)):
            tokens = tuple(rng.randrange(4, vocab_size) for _ in range(rng.randint(1, 4)))
            group.append(Probe(cut, tokens, (*tokens[1:], rng.randrange(4, vocab_size))))
        probes.append(group)
    return prefixes, probes


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "expanded"])
@pytest.mark.parametrize("name", ["gpt", "gpt2", "llama"])
def test_cached_probes_equal_full_forwards(subjects, name, packed):
    model = subjects[name].model.model
    prefixes, probes = _random_probes(model.config.vocab_size, seed=1)
    fast = score_probes(model, prefixes, probes, prefix_batch=2, packed=packed)
    slow = score_probes_full(model, prefixes, probes, batch_size=1)
    assert fast.logprob.shape == slow.logprob.shape == (12, 4)
    np.testing.assert_array_equal(fast.scored, slow.scored)
    difference = np.abs(np.exp(fast.logprob) - np.exp(slow.logprob))[fast.scored]
    assert difference.max() < 1e-4
    np.testing.assert_array_equal(fast.match, slow.match)


def test_distance_runs_every_model_on_the_same_stories(subjects):
    settings = fg.make_settings("distance", "0,1,3,6", n=4, n_boot=10)
    models = [subjects[k] for k in ("entnet", "memn2n", "gpt")]
    result = fg.run_experiment(settings, models)
    samples = result.samples
    assert len(samples) == 3 * 4 * 4
    per_model = [
        samples[samples.model == m.name][["sample", "distance", "n_sentences"]].to_numpy()
        for m in models
    ]
    np.testing.assert_array_equal(per_model[0], per_model[1])
    np.testing.assert_array_equal(per_model[0], per_model[2])
    assert set(result.summary.columns) >= {"correct_mean", "correct_low", "correct_high"}
    assert (result.summary.correct_low <= result.summary.correct_mean + 1e-12).all()
    assert set(result.fits.metric) == {"correct", "prob"}


@pytest.mark.parametrize("name", ["entnet", "memn2n", "gpt"])
def test_distance_probabilities_match_asking_each_truncated_story(subjects, name):
    subject = subjects[name]
    settings = fg.make_settings("distance", "0,2,5", n=3)
    frame = fg.run_chunk(settings, subject, [0, 1, 2])
    for _, row in frame.iterrows():
        story = fg._distance_story(settings.task, settings.seed, int(row["sample"]), 5)
        kept = story.sentences[: int(row.n_sentences)]
        assert max(story.question.support) + row.distance == row.n_sentences
        if name == "gpt":
            loaded = subject.model
            probs = answer_probs(loaded.model, loaded.tokenizer, [(kept, story.question.text)])
            target = loaded.tokenizer.convert_tokens_to_ids(story.question.answer.lower())
        else:
            probs = subject.model.answer_probs([(kept, story.question.text)])
            target = subject.model.vocab.id(story.question.answer.lower())
        assert abs(probs[0, target] - row.prob) < 1e-4
        assert row.correct == (probs[0].argmax() == target)


def test_depth_length_places_the_fact_at_the_requested_depth(subjects):
    settings = fg.make_settings("depth-length", "5,9", depths=(0, 0.5, 1), n=2, n_boot=5)
    result = fg.run_experiment(settings, [subjects["memn2n"]])
    samples = result.samples
    assert len(samples) == 2 * 2 * 3
    assert (samples.n_sentences == samples.length).all()
    expected = samples.length - (1 + (samples.depth * (samples.length - 1)).round())
    np.testing.assert_array_equal(samples.distance.to_numpy(), expected.to_numpy())
    assert len(result.summary) == 6
    assert not result.distance_summary.empty


@pytest.mark.parametrize("name", ["gpt", "gpt2"])
def test_passkey_scores_the_answer_by_teacher_forcing(subjects, name):
    subject = subjects[name]
    settings = fg.make_settings("passkey", "20,48", depths=(0, 0.5, 1), n=2)
    frame = fg.run_chunk(settings, subject, [0, 1])
    assert len(frame) == 2 * 2 * 3
    assert (frame.n_tokens <= frame.length).all()
    assert (frame[frame.length == 48].n_tokens >= 48 - 18).all()  # a sentence is <= 18 tokens
    fact_first = frame[(frame.depth == 0) & (frame.length == 48)]
    assert (fact_first.tokens_after_fact > 0).all()
    middle = frame[frame.depth == 0.5].tokens_after_fact.to_numpy()
    assert (middle <= fact_first.tokens_after_fact.max()).all()
    assert (frame[frame.depth == 1].tokens_after_fact == 0).all()
    np.testing.assert_allclose(frame.nll, -np.log(frame.prob), rtol=1e-6)
    assert ((frame.prob > 0) & (frame.prob <= 1)).all()


def test_passkey_refuses_lengths_beyond_learned_positions(subjects):
    settings = fg.make_settings("passkey", "200", depths=(0.5,), n=1)
    with pytest.raises(StmemError, match="learned positions"):
        fg.run_chunk(settings, subjects["gpt2"], [0])


def test_copy_gap_compares_the_copy_with_a_control(subjects):
    subject = subjects["llama"]
    settings = fg.make_settings("copy-gap", "0,5,20", span=6, n=2, n_boot=5)
    frame = fg.run_chunk(settings, subject, [0, 1])
    assert len(frame) == 2 * 3
    np.testing.assert_allclose(frame.delta_nll, frame.nll_copy - frame.nll_control)
    np.testing.assert_allclose(
        frame.benefit, (frame.nll_control - frame.nll_copy) / frame.nll_control
    )
    assert frame.copy_accuracy.between(0, 1).all()


def test_position_nll_matches_token_losses(subjects):
    subject = subjects["gpt2"]
    text = "Mary went to the kitchen. John moved to the garden. Where is Mary? kitchen."
    settings = fg.make_settings("position-nll", "60", text=text, n=5)
    assert settings.n_samples == 1
    result = fg.run_experiment(settings, [subject])
    ids = subject.model.tokenizer(text)["input_ids"]
    expected = token_nll(subject.model.model, [ids])[0]
    np.testing.assert_allclose(result.samples.nll.to_numpy(), expected, atol=1e-6)
    assert result.fits.metric.tolist() == ["icl_score"]
    assert np.isfinite(result.fits.icl_score.iloc[0])


def test_icl_positions_follow_olsson_and_scale_down():
    assert fg.icl_positions(2000) == (50, 500)
    assert fg.icl_positions(101) == (10, 100)
    assert fg.icl_positions(5) == (1, 4)


def test_gate_retention_starts_at_one_and_has_a_floor(subjects):
    settings = fg.make_settings("gate-retention", "0,1,2,4,8", n=3, n_boot=10)
    result = fg.run_experiment(settings, [subjects["entnet"]])
    at_zero = result.summary[result.summary.lag == 0]
    assert at_zero.cosine_mean.iloc[0] == pytest.approx(1.0)
    assert (result.samples.cosine <= 1 + 1e-6).all()
    fit = result.fits.iloc[0]
    assert fit.chance == pytest.approx(result.samples.baseline.mean())


def test_fits_recover_a_known_half_life():
    rng = np.random.default_rng(0)
    grid = [0, 1, 2, 4, 8, 16, 32, 64]
    chance, tau = fg.STORY_CHANCE, 10.0
    rows = []
    for d in grid:
        p = chance + (1 - chance) * math.exp(-d / tau)
        for sample in range(200):
            rows.append(
                {"model": "m", "sample": sample, "distance": d, "correct": rng.random() < p}
            )
    samples = pd.DataFrame(rows).assign(prob=lambda f: f.correct * 1.0, nll=0.0)
    settings = fg.make_settings("distance", grid, n=200, n_boot=50)
    result = fg.build_result(settings, samples)
    row = result.fits[result.fits.metric == "correct"].iloc[0]
    assert row.half_life == pytest.approx(tau * math.log(2), rel=0.25)
    assert row.half_life_low <= row.half_life <= row.half_life_high
    assert row.best_fit in ("exp", "power")
    line = result.json_lines()[0]
    assert set(line) >= {"model", "experiment", "half_life", "half_life_ci", "effective_length"}


def test_wilson_interval_matches_the_formula():
    low, high = fg.wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4)
    assert high == pytest.approx(0.7634, abs=1e-4)
    assert fg.wilson_interval(0, 10)[0] == 0.0


@pytest.mark.parametrize("grid", ["0,1,x", "-1,2", ""])
def test_bad_grids_are_refused_with_a_reason(grid):
    if grid == "":
        with pytest.raises(StmemError, match="empty"):
            fg.parse_grid(grid)
    else:
        with pytest.raises(StmemError):
            fg.make_settings("distance", grid)


def test_experiments_refuse_models_they_cannot_probe(subjects):
    with pytest.raises(StmemError, match="causal language model"):
        fg.run_chunk(fg.make_settings("passkey", "16", n=1), subjects["entnet"], [0])
    with pytest.raises(StmemError, match="EntNet"):
        fg.run_chunk(fg.make_settings("gate-retention", "1", n=1), subjects["gpt"], [0])
    with pytest.raises(StmemError, match="Unknown experiment"):
        fg.make_settings("recall")


def test_a_stopped_run_keeps_the_chunks_done(subjects):
    settings = fg.make_settings("gate-retention", "0,1,2", n=20, n_boot=5)
    result = fg.run_experiment(settings, [subjects["entnet"]], progress=lambda done, total: False)
    assert not result.complete
    assert result.samples["sample"].nunique() == settings.spec.chunk


def test_figures_keep_distance_zero_visible_and_mark_half_lives():
    from stmem_viz.plots import forgetting as plots

    rng = np.random.default_rng(1)
    grid = [0, 1, 2, 4, 8, 16, 32, 64]
    rows = []
    for model in ("<b>model</b>", "other"):
        for d in grid:
            p = fg.STORY_CHANCE + (1 - fg.STORY_CHANCE) * math.exp(-d / 6)
            for sample in range(60):
                rows.append(
                    {"model": model, "sample": sample, "distance": d, "correct": rng.random() < p}
                )
    samples = pd.DataFrame(rows).assign(prob=lambda f: f.correct * 1.0, nll=0.0)
    result = fg.build_result(fg.make_settings("distance", grid, n=60, n_boot=20), samples)
    figure = plots.curve_figure(
        result.summary, "distance", "correct", result.fitted, result.fits, chance=fg.STORY_CHANCE
    )
    assert figure.layout.xaxis.ticktext[0] == "0"
    assert figure.layout.xaxis.tickvals[0] == 0.0
    assert figure.layout.xaxis.tickvals[-1] == pytest.approx(math.log1p(64))
    names = [trace.name for trace in figure.data]
    assert "&lt;b&gt;model&lt;/b&gt;" in names and "<b>model</b>" not in names
    markers = [t for t in figure.data if t.name and t.name.endswith("half-life")]
    assert len(markers) == 2
    half = result.fits[(result.fits.model == "other") & (result.fits.metric == "correct")]
    assert markers[1].x[0] == pytest.approx(math.log1p(half.half_life.iloc[0]))

    cells = pd.DataFrame(
        {
            "model": "m",
            "length": [4, 4, 8, 8],
            "depth": [0, 1, 0, 1],
            "correct_mean": [1, 0.5, 0.2, 0],
        }
    )
    heatmap = plots.heatmap_figure(cells, "correct")
    assert heatmap.data[0].z.tolist() == [[1, 0.2], [0.5, 0]]
    assert list(heatmap.data[0].y) == ["0%", "100%"]
