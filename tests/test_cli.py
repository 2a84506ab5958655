"""The command line: attention export, models listing, and one-line errors with exit status 2."""

import subprocess
import sys

import numpy as np
import pytest

from stmem_viz.cli import main


def test_attention_writes_tokens_and_one_layer_for_a_decoder(
    tiny_model_dirs, tiny_loaded, tmp_path
):
    out = tmp_path / "gpt2.npz"
    code = main(
        [
            "attention",
            str(tiny_model_dirs["llama"]),
            "--text",
            "mary went to the kitchen",
            "--layer",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    data = np.load(out)
    assert set(data.files) == {"tokens", "attention"}
    loaded = tiny_loaded["llama"]
    n = len(data["tokens"])
    assert data["attention"].dtype == np.float32
    assert data["attention"].shape == (loaded.n_heads, n, n)
    np.testing.assert_allclose(data["attention"].sum(axis=-1), 1.0, atol=1e-5)


def test_attention_writes_three_stacks_for_an_encoder_decoder(tiny_model_dirs, tmp_path):
    out = tmp_path / "bart.npz"
    code = main(
        [
            "attention",
            str(tiny_model_dirs["bart"]),
            "--text",
            "mary went home",
            "--target",
            "mary is home",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    data = np.load(out)
    assert set(data.files) == {
        "encoder_tokens",
        "decoder_tokens",
        "encoder_attention",
        "decoder_attention",
        "cross_attention",
    }
    heads, q, k = data["cross_attention"].shape
    assert q == len(data["decoder_tokens"]) and k == len(data["encoder_tokens"])


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--text", "   "], "text"),
        (["--text", "hello", "--layer", "7"], "--layer"),
    ],
)
def test_bad_attention_input_exits_2_with_one_line(
    tiny_model_dirs, tmp_path, capsys, arguments, message
):
    code = main(
        ["attention", str(tiny_model_dirs["gpt2"]), *arguments, "--out", str(tmp_path / "x.npz")]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stmem-viz: error:") and message in err
    assert len(err.splitlines()) == 1


def test_unknown_hub_id_offline_fails_fast_in_a_subprocess(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stmem_viz.cli",
            "attention",
            "nobody/nothing-here",
            "--text",
            "hi",
            "--out",
            str(tmp_path / "x.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HF_HUB_OFFLINE": "1", "PATH": ""},
    )
    assert result.returncode == 2
    assert "nobody/nothing-here" in result.stderr
    assert "Traceback" not in result.stderr


def test_models_lists_devices(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "Bundled models:" in out and "cpu" in out
