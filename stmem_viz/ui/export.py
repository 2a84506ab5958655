"""Download buttons for figures (HTML, PNG) and arrays (CSV, NPZ), drawn the same on every page."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable

import plotly.graph_objects as go
import streamlit as st

from stmem_viz.plots.export import figure_html, figure_png


def png_available() -> bool:
    """PNG export needs kaleido and a Chromium-family browser on this machine."""
    has_browser = any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))
    return importlib.util.find_spec("kaleido") is not None and has_browser


def figure_downloads(figure: go.Figure, name: str, key: str) -> None:
    """HTML and PNG buttons for one figure; the PNG is rendered only when clicked."""
    left, right = st.columns(2)
    left.download_button(
        "Figure (HTML)",
        data=lambda: figure_html(figure),
        file_name=f"{name}.html",
        mime="text/html",
        key=f"{key}.html",
        on_click="ignore",
    )
    if png_available():
        right.download_button(
            "Figure (PNG)",
            data=lambda: figure_png(figure),
            file_name=f"{name}.png",
            mime="image/png",
            key=f"{key}.png",
            on_click="ignore",
        )
    else:
        right.caption("PNG: use the camera button on the chart (kaleido or Chromium missing).")


def data_downloads(
    name: str,
    key: str,
    csv: Callable[[], bytes] | None = None,
    npz: Callable[[], bytes] | None = None,
) -> None:
    """CSV and NPZ buttons; each file is built only when its button is clicked."""
    left, right = st.columns(2)
    if csv is not None:
        left.download_button(
            "Data (CSV)",
            data=csv,
            file_name=f"{name}.csv",
            mime="text/csv",
            key=f"{key}.csv",
            on_click="ignore",
        )
    if npz is not None:
        right.download_button(
            "Data (NPZ)",
            data=npz,
            file_name=f"{name}.npz",
            mime="application/octet-stream",
            key=f"{key}.npz",
            on_click="ignore",
        )
