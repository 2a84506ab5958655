"""The attention page, run headless with AppTest on tiny local models."""

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

TIMEOUT = 120
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _open(spec: str, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["sidebar.spec"] = spec
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    return at


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _heatmap_z(figure: dict) -> np.ndarray:
    z = figure["data"][0]["z"]
    if isinstance(z, dict):  # plotly 7 ships arrays as base64 with dtype and shape
        import base64

        flat = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"]))
        return flat.reshape([int(s) for s in str(z["shape"]).split(",")])
    return np.asarray(z, dtype=float)


@pytest.fixture(scope="module")
def gpt2_dir(tiny_model_dirs):
    return str(tiny_model_dirs["gpt2"])


def test_page_shows_a_heatmap_whose_rows_sum_to_one(gpt2_dir):
    at = _open(gpt2_dir)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    figures = _figures(at)
    assert figures, "no chart drawn"
    z = _heatmap_z(figures[0])
    assert z.shape[0] == z.shape[1] > 3
    np.testing.assert_allclose(z.sum(axis=1), 1.0, atol=1e-4)
    assert np.allclose(np.triu(z, 1), 0.0), "a causal model attended to the future"


def test_changing_layer_head_and_query_redraws(gpt2_dir):
    at = _open(gpt2_dir)
    first = _heatmap_z(_figures(at)[0])
    at.number_input(key="attention.layer").set_value(1).run()
    at.selectbox(key="attention.head").set_value(2).run()
    assert not at.exception, at.exception
    second = _heatmap_z(_figures(at)[0])
    assert not np.allclose(first, second)
    title = _figures(at)[0]["layout"]["title"]["text"]
    assert "layer 1" in title and "head 2" in title

    at.selectbox(key="attention.query").set_value(3).run()
    assert not at.exception, at.exception
    query_figure = next(f for f in _figures(at) if f["layout"]["title"]["text"].startswith("query"))
    assert query_figure["layout"]["title"]["text"].startswith("query 3:")
    assert len(query_figure["data"]) == 2  # raw scores beside weights
    assert at.query_params["layer"] == "1" and at.query_params["head"] == "2"


def test_mean_of_heads_and_hidden_first_token_renormalise(gpt2_dir):
    at = _open(gpt2_dir)
    at.selectbox(key="attention.head").set_value("mean")
    at.checkbox(key="attention.hide_first").check().run()
    assert not at.exception, at.exception
    z = _heatmap_z(_figures(at)[0])
    np.testing.assert_allclose(z.sum(axis=1), 1.0, atol=1e-4)
    assert not _figures(at)[0]["layout"]["yaxis"]["ticktext"][0].startswith("0:")


def test_encoder_decoder_shows_cross_attention(tiny_model_dirs):
    at = _open(str(tiny_model_dirs["bart"]))
    assert not at.exception, at.exception
    assert at.selectbox(key="attention.stack").value == "cross"
    title = _figures(at)[0]["layout"]["title"]["text"]
    assert title.startswith("cross-attention")
    at.selectbox(key="attention.stack").set_value("encoder").run()
    assert not at.exception, at.exception
    assert _figures(at)[0]["layout"]["title"]["text"].startswith("encoder self-attention")


def test_empty_text_gets_a_message_and_keeps_the_model(gpt2_dir):
    at = _open(gpt2_dir)
    at.text_area(key="attention.text").set_value("   ").run()
    assert not at.exception, at.exception
    assert any("text" in e.value.lower() for e in at.error)
    assert at.session_state["sidebar.spec"] == gpt2_dir


def test_text_over_the_token_limit_is_truncated_with_a_warning(gpt2_dir):
    at = _open(gpt2_dir, **{"sidebar.max_tokens": 16})
    at.text_area(key="attention.text").set_value("mary went to the kitchen . " * 20).run()
    assert not at.exception, at.exception
    assert any("only the first 16" in w.value for w in at.warning)
    assert _heatmap_z(_figures(at)[0]).shape == (16, 16)


def test_unknown_offline_hub_id_gets_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = _open("no-such-org/no-such-model")
    assert not at.exception, at.exception
    assert at.error and "no-such-org/no-such-model" in at.error[0].value
    assert not at.get("plotly_chart")


def test_html_like_text_is_shown_literally(gpt2_dir):
    at = _open(gpt2_dir)
    at.text_area(key="attention.text").set_value("<img src=x onerror=alert(1)> hello").run()
    assert not at.exception, at.exception
    labels = " ".join(_figures(at)[0]["layout"]["xaxis"]["ticktext"])
    assert "<img" not in labels and "&lt;" in labels


def test_head_table_lists_every_layer_and_head(gpt2_dir, tiny_loaded):
    at = _open(gpt2_dir)
    table = next(frame.value for frame in at.dataframe if "entropy" in frame.value)
    loaded = tiny_loaded["gpt2"]
    assert len(table) == loaded.n_layers * loaded.n_heads
    assert {"entropy", "first_token_mass", "prev_token_score", "mean_distance"} <= set(table)


def test_app_opens_on_the_bundled_default_model():
    from stmem_viz.models.bundled import list_bundled

    if "story-gpt" not in list_bundled():
        pytest.skip("bundled story-gpt missing")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="sidebar.choice").value == "bundled:story-gpt"
    z = _heatmap_z(_figures(at)[0])
    np.testing.assert_allclose(z.sum(axis=1), 1.0, atol=1e-4)
    assert not at.warning, [w.value for w in at.warning]  # the default story has no unknown word
    captions = " ".join(c.value for c in at.caption)
    assert "Layer 1, heads 0 and 2: trained to attend from the question's '?'" in captions


def test_models_without_attention_training_name_no_trained_heads(gpt2_dir):
    at = _open(gpt2_dir)
    assert not at.exception, at.exception
    assert "trained to attend" not in " ".join(c.value for c in at.caption)
