"""The Memory page, run headless with AppTest and once in a real browser.

The bundled story-entnet and story-memn2n are used when installed; otherwise small untrained
networks built by the library are saved to a temporary folder and registered as models trained
in this session (``session.trained_models``), which is how the Train page hands them over.
"""

import json
import os
import random
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from stmem_viz.data import default_vocabulary, generate_story, write_babi
from stmem_viz.models.bundled import list_bundled
from stmem_viz.models.story_models import StoryModel, build_network, save_story_model
from stmem_viz.ui.memory import NEW_STORY_BUTTON, PLAY_BUTTON

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120
SIZES = {"entnet": {"dim": 16, "slots": 6, "max_words": 12}, "memn2n": {"dim": 12, "hops": 2}}


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict[str, str]:
    """Model spec by family: bundled when present, else a tiny saved model's folder."""
    bundled = set(list_bundled())
    found = {f: f"bundled:story-{f}" for f in SIZES if f"story-{f}" in bundled}
    root = tmp_path_factory.mktemp("memory_page_models")
    vocab = default_vocabulary()
    for family, sizes in SIZES.items():
        if family in found:
            continue
        torch.manual_seed(0)
        network = build_network(family, len(vocab), sizes)
        config = {"stmem_family": family, "name": f"tiny-{family}", "vocab_size": len(vocab)}
        model = StoryModel(network, vocab, config, f"tiny-{family}", torch.device("cpu"))
        found[family] = str(save_story_model(model, root / family))
    return found


def open_page(specs: dict[str, str], family: str = "entnet") -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["session.trained_models"] = {
        f"tiny-{f}": spec for f, spec in specs.items() if not spec.startswith("bundled:")
    }
    at.session_state["memory.model"] = specs[family]
    at.run()
    at.switch_page("pages/memory.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """Figure JSON of every plotly chart, by title text (up to the first " — " or " (")."""
    found = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec["layout"].get("title", {}).get("text", "")
        found[title.split(" — ")[0].split(" (")[0]] = spec
    return found


def test_generated_story_shows_every_entnet_view(specs):
    at = open_page(specs)
    shown = charts(at)
    for title in (
        "Slot states",
        "Write gate per slot",
        "Which slot tracks what",
        "Write timeline: gate, sentence × slot",
        "Answer distribution",
        "Read attention of the question over the slots",
        "Answer with the full memory and with slot",
        "Recall over time: P",
    ):
        assert any(t.startswith(title) or title in t for t in shown), (title, list(shown))
    states = shown["Slot states"]
    assert [t["coloraxis"] for t in states["data"]] == ["coloraxis", "coloraxis", "coloraxis2"]
    assert not at.error


def test_moving_the_step_redraws_the_state_of_that_sentence(specs):
    at = open_page(specs)
    at.slider(key="memory.length").set_value(20).run()
    last = charts(at)["Slot states"]["layout"]["title"]["text"]
    assert last.startswith("Slot states — 20: ")
    at.slider(key="memory.step").set_value(4).run()
    assert not at.exception
    assert charts(at)["Slot states"]["layout"]["title"]["text"].startswith("Slot states — 4: ")


def test_play_advances_one_sentence_per_run_until_paused(specs):
    at = open_page(specs)
    n = at.session_state["memory.step"]  # a new story opens at its last sentence
    at.button(key=PLAY_BUTTON).click().run()
    assert at.session_state["memory.playing"]
    assert at.session_state["memory.step"] == 1  # playing from the end starts over
    at.run()
    at.run()
    assert at.session_state["memory.step"] == 3
    assert charts(at)["Slot states"]["layout"]["title"]["text"].startswith("Slot states — 3: ")
    at.button(key=PLAY_BUTTON).click().run()
    assert not at.session_state["memory.playing"]
    at.run()
    assert at.session_state["memory.step"] == 3
    assert n > 3 and not at.exception


def test_new_story_button_changes_the_story(specs):
    at = open_page(specs)
    before = at.session_state["memory.seed"]
    question = at.markdown[0].value
    at.button(key=NEW_STORY_BUTTON).click().run()
    assert at.session_state["memory.seed"] == before + 1
    sentences = at.text[0].value
    at.button(key=NEW_STORY_BUTTON).click().run()
    assert (at.text[0].value, at.markdown[0].value) != (sentences, question)


def test_silencing_a_slot_states_the_change_of_the_right_answer(specs):
    at = open_page(specs)
    at.selectbox(key="memory.silence").set_value(1).run()
    assert not at.exception
    ablation = charts(at)["Answer with the full memory and with slot 1 silenced"]
    assert [t["name"] for t in ablation["data"]] == ["full memory", "slot 1 silenced"]
    assert any("Slot 1 silenced: P" in i.value for i in at.info)


def test_pasted_babi_stories_mark_support_in_the_memn2n_hops(specs):
    at = open_page(specs, "memn2n")
    stories = [generate_story(2, random.Random(i), n_sentences=6) for i in range(2)]
    at.radio(key="memory.source").set_value("Typed text").run()
    at.text_area(key="memory.text").input(write_babi(stories)).run()
    at.selectbox(key="memory.story_index").set_value(1).run()
    assert not at.exception and not at.error
    hops = charts(at)["Read attention of each hop over the sentences"]
    labels = hops["layout"]["yaxis"]["ticktext"]
    marked = [i for i, label in enumerate(labels) if label.startswith("★")]
    assert marked == sorted(i - 1 for i in stories[1].question.support)
    assert f"**Story's answer:** {stories[1].question.answer} " in at.markdown[0].value
    at.selectbox(key="memory.drop").set_value(marked[-1]).run()
    assert not at.exception
    assert any(f"Sentence {marked[-1] + 1} removed: P" in i.value for i in at.info)


def test_bad_text_shows_an_error_and_keeps_the_page(specs):
    at = open_page(specs)
    at.radio(key="memory.source").set_value("Typed text").run()
    at.text_area(key="memory.text").input("Mary went to the kitchen.").run()
    assert not at.exception
    assert "no question" in at.error[0].value
    assert at.radio(key="memory.source").value == "Typed text"
    at.text_area(key="memory.text").input("Bob went to the moon.\nWhere is Daniel?").run()
    assert not at.exception and not at.error
    warnings = " ".join(w.value for w in at.warning)
    assert "bob" in warnings and "moon" in warnings and "daniel" in warnings


@pytest.mark.browser
def test_memory_page_renders_in_a_real_browser(specs, tmp_path):
    from browser import browser_page, require_browser, streamlit_server, wait_settled

    require_browser()
    with streamlit_server() as url, browser_page() as page:
        page.goto(url)
        wait_settled(page)
        page.get_by_role("link", name="Memory").first.click()
        page.wait_for_url("**/memory")
        page.wait_for_timeout(500)
        wait_settled(page)
        if not any(spec.startswith("bundled:") for spec in specs.values()):
            # a fresh browser session has no trained models: open the tiny EntNet by folder
            box = page.get_by_role("textbox", name="Model folder")
            box.fill(specs["entnet"])
            box.press("Enter")
            page.wait_for_timeout(500)
            wait_settled(page)
        chart = page.locator(".js-plotly-plot").first
        chart.wait_for(state="visible", timeout=60_000)
        page.wait_for_timeout(1500)
        box = chart.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 200
        assert page.locator(".js-plotly-plot").count() >= 4  # MemN2N 4, EntNet 10
        assert page.locator('[data-testid="stException"]').count() == 0
        shot = Path(os.environ.get("STMEM_SCREENSHOT_DIR", tmp_path)) / "memory_page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000


def test_switching_between_families_keeps_choices_in_range(specs):
    at = open_page(specs)
    at.selectbox(key="memory.silence").set_value(SIZES["entnet"]["slots"] - 1).run()
    at.slider(key="memory.length").set_value(30).run()
    at.selectbox(key="memory.model").set_value(specs["memn2n"]).run()
    assert not at.exception and not at.error
    assert "Read attention of each hop over the sentences" in charts(at)
    at.selectbox(key="memory.drop").set_value(29).run()
    at.slider(key="memory.length").set_value(5).run()
    assert not at.exception and at.selectbox(key="memory.drop").value < 5
    at.selectbox(key="memory.model").set_value(specs["entnet"]).run()
    assert not at.exception and at.slider(key="memory.step").value == 5
    labels = [b.label for b in at.get("download_button")]
    assert "Data (NPZ)" in labels and "Figure (HTML)" in labels
