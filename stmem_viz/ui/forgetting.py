"""The Forgetting page's Streamlit helpers: model list, cached loading, a run that advances one
chunk of samples per rerun (so a Stop button can end it between chunks), and the result views.

Session keys (all under ``forgetting.``): the widgets, ``forgetting.job`` (a run in progress:
settings, chunks, finished frames, timing, stop flag), ``forgetting.result`` (the last
:class:`~stmem_viz.analysis.forgetting.ForgettingResult`, kept across pages) and
``forgetting.estimates`` (seconds per (settings, model), measured on one sample).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from stmem_viz import StmemError
from stmem_viz.analysis import forgetting as fg
from stmem_viz.models.bundled import bundled_family, list_bundled
from stmem_viz.plots import forgetting as figures
from stmem_viz.ui import state
from stmem_viz.ui.export import figure_downloads
from stmem_viz.ui.memory import escape_markdown

JOB, RESULT, ESTIMATES = "forgetting.job", "forgetting.result", "forgetting.estimates"


def model_options(experiment: str) -> list[str]:
    """Specs the experiment can run on: bundled models first, then this session's models."""
    needs = fg.EXPERIMENTS[experiment].subjects
    specs = [f"bundled:{n}" for n in list_bundled()]
    specs += list(state.trained_models().values())
    options = []
    for spec in specs:
        try:
            kind = fg.subject_kind(spec)
        except StmemError:
            continue
        if needs == "causal" and kind != "causal-lm":
            continue
        if needs == "entnet" and kind != "entnet":
            continue
        options.append(spec)
    return options


def family_label(spec: str) -> str:
    """``bundled:story-entnet (entnet)`` style labels for the model picker."""
    if spec.startswith("bundled:"):
        return f"{spec} ({bundled_family(spec)})"
    return spec


@st.cache_resource(show_spinner="Loading the model…", max_entries=6)
def load_subject(spec: str, device: str) -> fg.Subject:
    """One loaded model per (spec, device), shared by every session; never modified."""
    return fg.load_subject(spec, device)


def show_error(error: Exception) -> None:
    st.error(escape_markdown(str(error)))


@dataclass
class Job:
    """A run in progress: which chunks remain, what the finished ones returned."""

    settings: fg.Settings
    models: tuple[str, ...]
    device: str
    chunks: list[fg.Chunk]
    frames: list[pd.DataFrame] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    stop: bool = False

    @property
    def done(self) -> int:
        return len(self.frames)

    def seconds_left(self) -> float | None:
        if not self.frames:
            return None
        per_chunk = (time.perf_counter() - self.started) / self.done
        return per_chunk * (len(self.chunks) - self.done)


def start_job(settings: fg.Settings, models: list[str], device: str) -> None:
    """Check the models and queue the run; the page then advances it one chunk per rerun.

    Raises:
        StmemError: no model chosen, a model that does not load, or one the experiment does
            not fit.
    """
    if not models:
        raise StmemError("Choose at least one model.")
    for spec in models:
        fg.check_subject(settings, load_subject(spec, device))
    chunks = fg.plan_chunks(settings, models)
    st.session_state[JOB] = Job(settings, tuple(models), device, chunks)


def request_stop() -> None:
    """Stop button callback: end the run now, keeping the chunks finished so far.

    Callbacks run before the page script, so the page draws the partial result at once; the
    chunk that was running when the button was pressed is discarded.
    """
    job = st.session_state.get(JOB)
    if job is not None:
        job.stop = True
        finish_job(job)


def finish_job(job: Job) -> None:
    """Summarise and fit what the job gathered and keep it as the page's result."""
    st.session_state.pop(JOB, None)
    if not job.frames:
        st.session_state.pop(RESULT, None)
        return
    samples = pd.concat(job.frames, ignore_index=True)
    complete = job.done == len(job.chunks)
    st.session_state[RESULT] = fg.build_result(job.settings, samples, complete)


def advance_job() -> None:
    """Draw the progress bar and Stop button, run the next chunk, and rerun (or finish)."""
    job: Job | None = st.session_state.get(JOB)
    if job is None:
        return
    if job.stop or job.done >= len(job.chunks):
        finish_job(job)
        return
    left = job.seconds_left()
    text = f"Chunk {job.done + 1} of {len(job.chunks)}"
    text += f" · about {format_seconds(left)} left" if left is not None else ""
    st.progress(job.done / len(job.chunks), text=text)
    st.button("Stop", key="forgetting.stop", on_click=request_stop)
    chunk = job.chunks[job.done]
    try:
        frame = fg.run_chunk(job.settings, load_subject(chunk.model, job.device), chunk.samples)
    except StmemError as error:
        job.stop = True
        finish_job(job)
        show_error(error)
        return
    job.frames.append(frame)
    if job.done >= len(job.chunks):
        finish_job(job)
    st.rerun()


def estimate(settings: fg.Settings, models: list[str], device: str) -> float:
    """Seconds the whole run should take: one timed sample per model, extrapolated; cached.

    Raises:
        StmemError: no model chosen, or a model that does not load or fit the experiment.
    """
    if not models:
        raise StmemError("Choose at least one model.")
    cache = st.session_state.setdefault(ESTIMATES, {})
    total = 0.0
    for spec in models:
        key = (settings, spec, device)
        if key not in cache:
            cache[key] = fg.estimate_seconds(settings, load_subject(spec, device))
        total += cache[key]
    return total


def known_estimate(settings: fg.Settings, models: list[str], device: str) -> float | None:
    """The estimate if every model has been timed for these settings, else None."""
    cache = st.session_state.get(ESTIMATES, {})
    keys = [(settings, spec, device) for spec in models]
    return sum(cache[k] for k in keys) if keys and all(k in cache for k in keys) else None


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


FIT_COLUMNS = {
    "model": "model",
    "metric": "metric",
    "half_life": "half-life",
    "half_life_low": "CI low",
    "half_life_high": "CI high",
    "effective_length": "effective length",
    "best_fit": "best fit",
    "aic_exp": "AIC exp",
    "aic_power": "AIC power",
    "chance": "floor",
    "n_samples": "samples",
}
ICL_COLUMNS = {
    "model": "model",
    "icl_score": "ICL score",
    "icl_low": "CI low",
    "icl_high": "CI high",
    "n_samples": "samples",
}


def fit_table(result: fg.ForgettingResult) -> pd.DataFrame:
    """The fits as the page shows them: a half-life beyond the grid reads "> max", one of a
    curve that starts at its floor "at chance"."""
    columns = ICL_COLUMNS if result.settings.spec.fit_x is None else FIT_COLUMNS
    table = result.fits[[c for c in columns if c in result.fits]].rename(columns=columns)
    if "half-life" in table:
        beyond = f"> {max(result.settings.grid):g}"
        flat = result.fits["starts_at_chance"].to_numpy(dtype=bool)
        for column in ("half-life", "CI low", "CI high"):
            table[column] = [
                "at chance" if at_chance else f"{v:.3g}" if pd.notna(v) else beyond
                for v, at_chance in zip(table[column].astype(float), flat, strict=True)
            ]
    return table


def show_result(result: fg.ForgettingResult) -> None:
    """Curves, heatmaps, the fit table and downloads of one result."""
    settings = result.settings
    spec = settings.spec
    if not result.complete:
        st.warning("The run was stopped: these results cover the chunks finished before it.")
    figures_shown: list[tuple[str, object]] = []
    if settings.experiment == "position-nll":
        figure = figures.position_figure(result.summary, title=spec.title)
        st.plotly_chart(figure, key="forgetting.chart.position")
        figures_shown.append(("position-nll", figure))
    else:
        metrics = [m for m in spec.metrics if f"{m}_mean" in result.summary]
        metric = st.radio(
            "Metric",
            metrics,
            horizontal=True,
            key="forgetting.metric",
            format_func=lambda m: figures.METRIC_TITLES.get(m, m),
        )
        chance = (
            result.fits.chance.iloc[0] if "chance" in result.fits and len(result.fits) else None
        )
        if spec.heatmap:
            heat_metric = metric if metric in ("correct", "prob") else "correct"
            x_title = (
                "story length (sentences)"
                if settings.experiment == "depth-length"
                else ("context length (tokens)")
            )
            heatmap = figures.heatmap_figure(
                result.summary, heat_metric, x_title=x_title, title=spec.title
            )
            st.plotly_chart(heatmap, key="forgetting.chart.heatmap")
            figures_shown.append((f"{settings.experiment}-heatmap", heatmap))
        curve_data = result.distance_summary if spec.heatmap else result.summary
        x_title = {
            "distance": "distractor sentences after the fact",
            "gap_tokens": "tokens between the fact and the question (nominal)",
            "gap": "filler tokens between the copies",
            "lag": "sentences later",
        }[spec.fit_x]
        curve = figures.curve_figure(
            curve_data,
            spec.fit_x,
            metric,
            fitted=result.fitted,
            fits=result.fits,
            chance=chance if metric in ("correct", "prob", "cosine", "benefit") else None,
            x_title=x_title,
            title=f"{spec.title}: {figures.METRIC_TITLES.get(metric, metric)}",
        )
        st.plotly_chart(curve, key="forgetting.chart.curve")
        figures_shown.append((f"{settings.experiment}-curve", curve))
    st.subheader("Fits" if spec.fit_x else "In-context learning score")
    st.dataframe(fit_table(result), hide_index=True, key="forgetting.fits")
    downloads(result, figures_shown)


def downloads(result: fg.ForgettingResult, shown: list[tuple[str, object]]) -> None:
    """Raw samples as CSV or Parquet; every chart as HTML (and PNG where possible)."""
    name = f"forgetting-{result.settings.experiment}"
    left, right = st.columns(2)
    left.download_button(
        "Samples (CSV)",
        data=lambda: result.samples.to_csv(index=False).encode("utf-8"),
        file_name=f"{name}.csv",
        mime="text/csv",
        key="forgetting.download.csv",
        on_click="ignore",
    )
    right.download_button(
        "Samples (Parquet)",
        data=lambda: _parquet(result.samples),
        file_name=f"{name}.parquet",
        mime="application/octet-stream",
        key="forgetting.download.parquet",
        on_click="ignore",
    )
    for chart_name, figure in shown:
        figure_downloads(figure, chart_name, key=f"forgetting.download.{chart_name}")


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
