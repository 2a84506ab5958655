"""The Forgetting page through Streamlit's AppTest: choose an experiment and models, run a small
grid, and find the chart, the fit table and the downloads; bad input shows an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from stmem_viz.data import default_vocabulary
from stmem_viz.models.story_gpt import build_story_gpt
from stmem_viz.models.story_models import StoryModel, build_network, save_story_model

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 120


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("forgetting_page")
    vocab = default_vocabulary()
    torch.manual_seed(0)
    network = build_network("entnet", len(vocab), {"dim": 16, "slots": 4})
    entnet = StoryModel(network, vocab, {"stmem_family": "entnet"}, "tiny", torch.device("cpu"))
    save_story_model(entnet, root / "entnet")
    model, tokenizer = build_story_gpt(
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
        }
    )
    model.save_pretrained(root / "gpt")
    tokenizer.save_pretrained(root / "gpt")
    return {"entnet": str(root / "entnet"), "gpt": str(root / "gpt")}


def _open_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    return at.switch_page("pages/forgetting.py").run()


def _figure(at: AppTest, index: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def test_distance_run_draws_curves_fits_and_downloads(model_dirs):
    at = _open_page()
    assert not at.exception
    at.selectbox(key="forgetting.experiment").set_value("distance").run()
    at.text_input(key="forgetting.custom").set_value(f"{model_dirs['entnet']}, {model_dirs['gpt']}")
    at.text_input(key="forgetting.grid.distance").set_value("0,1,3")
    at.number_input(key="forgetting.n").set_value(3)
    at.run()
    at.button(key="forgetting.estimate").click().run()
    assert not at.exception
    assert any("Estimated run time" in info.value for info in at.info)
    at.button(key="forgetting.run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    figure = _figure(at)
    names = {trace.get("name") for trace in figure["data"]}
    assert {model_dirs["entnet"], model_dirs["gpt"]} <= names
    assert figure["layout"]["xaxis"]["ticktext"] == ["0", "1", "3"]
    fits = at.dataframe[0].value
    assert set(fits["model"]) == {model_dirs["entnet"], model_dirs["gpt"]}
    assert {"half-life", "CI low", "CI high", "best fit", "AIC exp", "AIC power"} <= set(fits)
    labels = {b.label for b in at.get("download_button")}
    assert {"Samples (CSV)", "Samples (Parquet)", "Figure (HTML)"} <= labels
    result = at.session_state["forgetting.result"]
    assert len(result.samples) == 2 * 3 * 3

    # the result survives a visit to another page and back
    at.switch_page("pages/attention.py").run()
    at.switch_page("pages/forgetting.py").run()
    assert at.get("plotly_chart")
    assert not at.exception


def test_depth_length_shows_a_heatmap_per_model(model_dirs):
    at = _open_page()
    at.selectbox(key="forgetting.experiment").set_value("depth-length").run()
    at.text_input(key="forgetting.custom").set_value(model_dirs["entnet"])
    at.text_input(key="forgetting.grid.depth-length").set_value("4,8")
    at.text_input(key="forgetting.depths").set_value("0,100")
    at.number_input(key="forgetting.n").set_value(2)
    at.run()
    at.button(key="forgetting.run").click().run()
    assert not at.exception
    heatmap = _figure(at, 0)
    assert heatmap["data"][0]["type"] == "heatmap"
    assert len(at.get("plotly_chart")) == 2  # heatmap and the curve against distance


def test_bad_input_shows_errors_and_keeps_state(model_dirs):
    at = _open_page()
    at.selectbox(key="forgetting.experiment").set_value("distance").run()
    at.text_input(key="forgetting.grid.distance").set_value("0,1,two")
    at.run()
    assert any("Could not read 'two'" in e.value for e in at.error)
    assert at.text_input(key="forgetting.grid.distance").value == "0,1,two"

    at.text_input(key="forgetting.grid.distance").set_value("0,1")
    at.run()
    at.button(key="forgetting.run").click().run()
    assert any("Choose at least one model" in e.value for e in at.error)

    at.text_input(key="forgetting.custom").set_value("/no/such/model/folder")
    at.run()
    at.button(key="forgetting.run").click().run()
    assert at.error
    assert not at.exception
    assert at.text_input(key="forgetting.custom").value == "/no/such/model/folder"


def test_experiments_refuse_unsuitable_models(model_dirs):
    at = _open_page()
    at.selectbox(key="forgetting.experiment").set_value("passkey").run()
    at.text_input(key="forgetting.custom").set_value(model_dirs["entnet"])
    at.run()
    at.button(key="forgetting.run").click().run()
    assert any("causal language model" in e.value for e in at.error)
    assert not at.exception


def test_a_stopped_run_shows_the_finished_chunks(model_dirs):
    from stmem_viz.analysis import forgetting as fg
    from stmem_viz.ui.forgetting import Job

    settings = fg.make_settings("gate-retention", "0,1,2", n=16, n_boot=5)
    chunks = fg.plan_chunks(settings, [model_dirs["entnet"]])
    subject = fg.load_subject(model_dirs["entnet"], "cpu")
    first = fg.run_chunk(settings, subject, chunks[0].samples)
    at = _open_page()
    at.session_state["forgetting.job"] = Job(
        settings, (model_dirs["entnet"],), "cpu", chunks, frames=[first], stop=True
    )
    at.run()
    assert not at.exception
    assert any("stopped" in w.value for w in at.warning)
    result = at.session_state["forgetting.result"]
    assert not result.complete
    assert result.samples["sample"].nunique() == len(chunks[0].samples)
