"""Figure builders: pure functions from arrays to plotly figures."""

import numpy as np
import pandas as pd

from stmem_viz.plots.attention import (
    attention_heatmap,
    head_grid,
    layer_head_overview,
    query_scores,
)
from stmem_viz.plots.common import pool_matrix, safe_label, token_labels
from stmem_viz.plots.export import arrays_npz, figure_html, matrix_csv


def _causal_weights(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, n))
    scores[np.triu_indices(n, 1)] = -np.inf
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def test_pooling_keeps_rows_summing_to_one_on_long_inputs():
    weights = _causal_weights(1000)
    pooled, block = pool_matrix(weights, 128)
    assert block == 8
    assert pooled.shape == (125, 125)
    np.testing.assert_allclose(pooled.sum(axis=1), 1.0, atol=1e-5)


def test_pooling_handles_lengths_that_do_not_divide_the_block():
    weights = _causal_weights(301)
    pooled, block = pool_matrix(weights, 100)
    assert block == 4
    np.testing.assert_allclose(pooled.sum(axis=1), 1.0, atol=1e-5)


def test_short_inputs_are_not_pooled():
    weights = _causal_weights(20)
    pooled, block = pool_matrix(weights, 128)
    assert block == 1
    assert pooled is weights


def test_token_text_that_looks_like_html_is_escaped_for_plotly():
    token = "<img src=x onerror=alert(1)>"
    assert safe_label(token) == "&lt;img src=x onerror=alert(1)&gt;"
    assert token_labels([token, "a"]) == ["0: &lt;img src=x onerror=alert(1)&gt;", "1: a"]


def test_heatmap_labels_every_token_and_keeps_duplicates_distinct():
    tokens = ["the", "cat", "the", "mat"]
    figure = attention_heatmap(_causal_weights(4), tokens, tokens, "t")
    assert list(figure.layout.yaxis.ticktext) == ["0: the", "1: cat", "2: the", "3: mat"]
    assert figure.layout.yaxis.autorange == "reversed"
    np.testing.assert_allclose(np.asarray(figure.data[0].z).sum(axis=1), 1.0, atol=1e-6)


def test_heatmap_of_a_long_input_is_pooled_and_says_so():
    tokens = [f"t{i}" for i in range(900)]
    figure = attention_heatmap(_causal_weights(900), tokens, tokens, "long", max_cells=300)
    assert np.asarray(figure.data[0].z).shape == (300, 300)
    assert "pooled 3x3" in figure.layout.title.text
    assert len(figure.layout.xaxis.tickvals) <= 60


def test_head_grid_draws_one_panel_per_head_on_one_scale():
    weights = np.stack([_causal_weights(6, seed) for seed in range(6)])
    figure = head_grid(weights, [str(i) for i in range(6)], columns=4)
    assert len(figure.data) == 6
    assert all(trace.coloraxis == "coloraxis" for trace in figure.data)
    assert figure.layout.coloraxis.cmax == np.max(weights)


def test_overview_puts_layers_down_and_heads_across():
    table = pd.DataFrame(
        {"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "entropy": [0.1, 0.2, 0.3, 0.4]}
    )
    figure = layer_head_overview(table, "entropy")
    np.testing.assert_allclose(np.asarray(figure.data[0].z), [[0.1, 0.2], [0.3, 0.4]])


def test_query_view_marks_masked_keys_and_shows_both_panels():
    scores = np.array([1.0, 0.5, -np.inf, -np.inf])
    weights = np.array([0.62, 0.38, 0.0, 0.0])
    figure = query_scores(scores, weights, ["a", "b", "c", "d"], "1: b")
    assert len(figure.data) == 2
    assert list(figure.data[0].customdata[2:]) == ["masked", "masked"]
    assert sum(a.text == "masked" for a in figure.layout.annotations) == 2


def test_query_view_without_scores_shows_weights_only():
    figure = query_scores(None, np.array([1.0]), ["a"], "0: a")
    assert len(figure.data) == 1


def test_exports_round_trip():
    weights = _causal_weights(3)
    csv = matrix_csv(weights, ["a", "b", "c"], ["a", "b", "c"]).decode()
    assert csv.splitlines()[0] == "query \\ key,0: a,1: b,2: c"
    import io

    loaded = np.load(io.BytesIO(arrays_npz(tokens=["a", "b", "c"], attention=weights)))
    assert list(loaded["tokens"]) == ["a", "b", "c"]
    np.testing.assert_array_equal(loaded["attention"], weights)
    html = figure_html(attention_heatmap(weights, ["a"] * 3, ["a"] * 3)).decode()
    assert "plotly" in html and "<html>" in html


def test_query_view_of_a_long_row_keeps_the_heaviest_keys_in_order():
    weights = np.full(500, 0.001)
    weights[[3, 250, 499]] = [0.2, 0.3, 0.1]
    scores = np.log(weights)
    figure = query_scores(scores, weights, [f"t{i}" for i in range(500)], "499: t499", max_keys=10)
    labels = list(figure.layout.yaxis.ticktext)
    assert len(labels) == 10
    assert labels[0].startswith("0:") or labels[0].startswith("1:")
    assert "3: t3" in labels and "250: t250" in labels and "499: t499" in labels
    assert "of 500" in figure.layout.title.text
