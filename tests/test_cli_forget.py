"""``stmem-viz forget``: runs an experiment, writes the samples, ends with a table or JSON lines;
bad input exits 2 with a one-line reason."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from stmem_viz.cli import main
from stmem_viz.data import default_vocabulary
from stmem_viz.models.bundled import list_bundled
from stmem_viz.models.story_models import StoryModel, build_network, save_story_model

JSON_KEYS = {
    "model",
    "experiment",
    "half_life",
    "half_life_ci",
    "effective_length",
    "best_fit",
    "aic_exp",
    "aic_power",
}


@pytest.fixture(scope="module")
def entnet_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    vocab = default_vocabulary()
    torch.manual_seed(0)
    network = build_network("entnet", len(vocab), {"dim": 16, "slots": 4})
    model = StoryModel(network, vocab, {"stmem_family": "entnet"}, "tiny", torch.device("cpu"))
    return str(save_story_model(model, tmp_path_factory.mktemp("cli_forget") / "entnet"))


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.strip().splitlines()]


def test_forget_writes_samples_and_json_lines(entnet_dir, tmp_path, capsys):
    out = tmp_path / "samples.csv"
    argv = [entnet_dir, "--experiment", "gate-retention", "--grid", "0,1,2,4", "--n", "3"]
    code = main(["forget", *argv, "--device", "cpu", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = _json_lines(captured.out)
    assert len(lines) == 1
    assert JSON_KEYS <= set(lines[0])
    assert lines[0]["best_fit"] in ("exp", "power")
    assert len(lines[0]["half_life_ci"]) == 2
    samples = pd.read_csv(out)
    assert len(samples) == 3 * 4
    assert "chunk" in captured.err  # the progress bar


def test_forget_prints_a_summary_table_and_writes_parquet(entnet_dir, tmp_path, capsys):
    out = tmp_path / "samples.parquet"
    argv = [entnet_dir, "--experiment", "distance", "--grid", "0,2", "--n", "2", "--out", str(out)]
    assert main(["forget", *argv]) == 0
    table = capsys.readouterr().out
    assert "half_life" in table and "best_fit" in table
    assert len(pd.read_parquet(out)) == 2 * 2


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--experiment", "distance", "--grid", "0,x"], "Could not read 'x'"),
        (["--experiment", "recall"], "Unknown experiment"),
        (["--experiment", "passkey", "--grid", "32"], "causal language model"),
    ],
)
def test_forget_bad_input_exits_2_with_a_reason(entnet_dir, tmp_path, capsys, argv, reason):
    code = main(["forget", entnet_dir, *argv, "--n", "1", "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert reason in err
    assert len(err.strip().splitlines()) == 1


def test_forget_refuses_an_unreachable_model(tmp_path, capsys):
    code = main(["forget", "/no/such/folder", "--experiment", "distance", "--out", "x.csv"])
    assert code == 2
    assert "stmem-viz: error" in capsys.readouterr().err


BUNDLED = set(list_bundled())


@pytest.mark.skipif(
    not {"story-entnet", "story-memn2n", "story-gpt"} <= BUNDLED,
    reason="the bundled story models are not installed",
)
def test_forget_on_the_bundled_story_models(tmp_path, capsys):
    models = ["bundled:story-entnet", "bundled:story-memn2n", "bundled:story-gpt"]
    out = tmp_path / "bundled.csv"
    argv = ["--experiment", "distance", "--grid", "0,2,8", "--n", "4", "--out", str(out)]
    assert main(["forget", *models, *argv, "--device", "cpu", "--json"]) == 0
    lines = _json_lines(capsys.readouterr().out)
    assert [line["model"] for line in lines] == models
    for line in lines:
        assert JSON_KEYS <= set(line)
        assert line["half_life"] is None or 0 <= line["half_life"] <= 8
    samples = pd.read_csv(out)
    assert len(samples) == 3 * 3 * 4


@pytest.mark.skipif("story-gpt" not in BUNDLED, reason="bundled story-gpt is not installed")
def test_forget_passkey_on_bundled_story_gpt(tmp_path, capsys):
    argv = ["--experiment", "passkey", "--grid", "32,64", "--depths", "0,100", "--n", "2"]
    out = tmp_path / "passkey.csv"
    assert main(["forget", "bundled:story-gpt", *argv, "--out", str(out), "--json"]) == 0
    (line,) = _json_lines(capsys.readouterr().out)
    assert JSON_KEYS <= set(line)
    assert len(pd.read_csv(out)) == 2 * 2 * 2
