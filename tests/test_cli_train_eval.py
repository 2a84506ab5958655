"""stmem-viz train and eval: a real short training run, then JSON accuracy lines."""

import json

import pytest

from stmem_viz.cli import main
from stmem_viz.models.bundled import list_bundled


def test_train_then_eval_prints_one_json_line_per_task(tmp_path, capsys):
    out = tmp_path / "memn2n"
    arguments = "--tasks 1 --stories 1000 --epochs 6 --size dim=24 --size hops=2 --lr 0.02"
    arguments += " --max-sentences 20 --device cpu"
    code = main(["train", "story-memn2n", *arguments.split(), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert (out / "model.safetensors").is_file() and (out / "training.json").is_file()
    capsys.readouterr()

    assert main(["eval", str(out), "--tasks", "1,2", "--n", "60", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["task"] for row in lines] == [1, 2]
    for row in lines:
        assert set(row) == {"model", "task", "n", "accuracy"}
        assert row["n"] == 60 and 0.0 <= row["accuracy"] <= 1.0
    assert lines[0]["accuracy"] > 0.5  # trained on task 1: far above chance (1/6)


@pytest.mark.skipif("story-entnet" not in list_bundled(), reason="bundled story-entnet missing")
def test_eval_of_a_bundled_model_reaches_its_target(capsys):
    assert main(["eval", "bundled:story-entnet", "--tasks", "1", "--n", "100", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["model"].endswith("story-entnet") and row["accuracy"] >= 0.97


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["eval", "bundled:story-entnet", "--tasks", "4"], "--tasks"),
        (["eval", "bundled:no-such-model"], "no-such-model"),
        (["train", "story-entnet", "--size", "slots=many", "--out", "x"], "--size"),
    ],
)
def test_bad_train_and_eval_input_exits_2(arguments, message, capsys):
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("stmem-viz: error:") and message in err
