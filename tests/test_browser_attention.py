"""The attention page in a real browser: Debian's chromium driven by Playwright."""

import os
import urllib.parse
from pathlib import Path

import pytest
from browser import browser_page, require_browser, streamlit_server, wait_settled

pytestmark = pytest.mark.browser

SHOTS = Path(os.environ.get("STMEM_SCREENSHOTS", "artifacts/screenshots"))


def test_attention_heatmap_renders_in_a_real_browser(tiny_model_dirs, tmp_path):
    require_browser()
    query = urllib.parse.urlencode(
        {"model": str(tiny_model_dirs["gpt2"]), "text": "<b>bold</b> mary went home", "head": 1}
    )
    with streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/?{query}")
        wait_settled(page)
        chart = page.locator(".js-plotly-plot").first
        chart.wait_for(timeout=60_000)
        box = chart.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 100
        # The heatmap's tick labels show the HTML-like token text literally.
        ticks = page.locator(".js-plotly-plot .xtick text").all_text_contents()
        assert "0: <" in ticks, ticks  # the escaped "<" shows as itself, not as "&lt;"
        assert page.locator(".js-plotly-plot .xtick b").count() == 0
        assert page.get_by_text("Exception").count() == 0
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "attention.png"), full_page=True)
        page.screenshot(path=str(tmp_path / "attention.png"))
    assert (tmp_path / "attention.png").stat().st_size > 10_000
