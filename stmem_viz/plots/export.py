"""Turn figures and arrays into downloadable bytes: HTML, PNG, CSV and NPZ."""

from __future__ import annotations

import io
import logging
import os
import shutil
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from stmem_viz import StmemError

log = logging.getLogger(__name__)


def figure_html(figure: go.Figure) -> bytes:
    """A standalone HTML page of the figure that works offline (plotly.js is embedded)."""
    return figure.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")


def figure_png(figure: go.Figure, scale: float = 2.0) -> bytes:
    """The figure as a PNG, rendered by kaleido through the system's Chromium.

    Raises:
        StmemError: kaleido or a Chromium/Chrome browser is not installed.
    """
    if not os.environ.get("BROWSER_PATH"):
        for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
            found = shutil.which(name)
            if found:
                os.environ["BROWSER_PATH"] = found
                break
    try:
        return figure.to_image(format="png", scale=scale)
    except Exception as error:  # kaleido raises several unrelated types when no browser is found
        log.info("PNG export failed: %s", error)
        raise StmemError(
            "PNG export needs kaleido and a Chromium browser ('pip install kaleido' and a "
            "system chromium); use the camera button on the chart instead."
        ) from error


def matrix_csv(matrix: np.ndarray, query_tokens: Sequence[str], key_tokens: Sequence[str]) -> bytes:
    """A [query, key] matrix as CSV with ``i: token`` row and column labels."""
    frame = pd.DataFrame(
        np.asarray(matrix),
        index=[f"{i}: {t}" for i, t in enumerate(query_tokens)],
        columns=[f"{j}: {t}" for j, t in enumerate(key_tokens)],
    )
    return frame.to_csv(index_label="query \\ key").encode("utf-8")


def arrays_npz(**arrays: np.ndarray | Sequence[str]) -> bytes:
    """Named arrays as an ``.npz`` file (string lists become unicode arrays; no pickles)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()
