"""Session state shared across pages, and the view kept in the URL's query parameters."""

from __future__ import annotations

import streamlit as st

# Query parameter -> session state key. A link with these parameters reopens the same view.
QUERY_KEYS = {
    "model": "sidebar.spec",
    "text": "attention.text",
    "target": "attention.target",
    "layer": "attention.layer",
    "head": "attention.head",
    "query": "attention.query",
}
INT_KEYS = {"layer", "head", "query"}


def apply_query_params() -> None:
    """Copy the URL's view into session state once per session, before widgets are drawn."""
    if st.session_state.get("state.query_applied"):
        return
    st.session_state["state.query_applied"] = True
    for param, key in QUERY_KEYS.items():
        if param not in st.query_params:
            continue
        value = st.query_params[param]
        if param in INT_KEYS:
            try:
                value = int(value)
            except ValueError:
                continue
        st.session_state[key] = value


def write_query_params(**view: object) -> None:
    """Put the current view into the URL so that a copied link reopens it."""
    for param, value in view.items():
        if value is None or value == "":
            st.query_params.pop(param, None)
        else:
            st.query_params[param] = str(value)


def trained_models() -> dict[str, str]:
    """Models trained in this session: display name -> folder (filled by the Train page)."""
    return st.session_state.setdefault("session.trained_models", {})


KEPT_PREFIXES = ("sidebar.", "attention.", "memory.", "forgetting.", "train.")


READ_ONLY_VALUE_TYPES = ("trigger_value", "file_uploader_state_value")


def _read_only_keys() -> set[str]:
    """Keys of widgets whose value cannot be assigned (buttons, download buttons, uploaders).

    Streamlit keeps no public list of them, so this reads the widget metadata of the session;
    if that internal layout changes, no key is reported and such widgets must simply avoid the
    kept prefixes.
    """
    try:
        from streamlit.runtime.state import get_session_state

        inner = get_session_state()._state
        metadata = inner._new_widget_state.widget_metadata
        mapper = inner._key_id_mapper
        found = set()
        for key in list(st.session_state.keys()):
            widget_id = mapper.get_id_from_key(key, None)
            meta = metadata.get(widget_id) if widget_id else None
            if meta is not None and str(meta.value_type).endswith(READ_ONLY_VALUE_TYPES):
                found.add(key)
        return found
    except (AttributeError, KeyError, TypeError):
        return set()


def keep_widget_state() -> None:
    """Keep widget values when the user switches pages.

    Streamlit forgets a widget's value once a run does not draw it; writing each value back into
    session state at the top of every run makes it plain state, which survives page switches.
    Buttons, download buttons and uploaders are skipped: their values cannot be assigned.
    """
    skip = _read_only_keys()
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith(KEPT_PREFIXES) and key not in skip:
            try:
                st.session_state[key] = st.session_state[key]
            except st.errors.StreamlitAPIException:
                continue  # a read-only widget the metadata lookup missed: nothing to keep


def run_through_entrypoint() -> None:
    """Make a page opened by a deep link on a fresh server run through ``app.py``.

    Streamlit treats a ``pages/`` folder beside the entry point as a legacy multipage app until
    the entry point has called ``st.navigation`` once, so the very first visit to ``/memory``
    on a new server would run that page alone (no shared layout, no kept state). Switching the
    legacy mode off and rerunning sends the request through ``app.py`` and its navigation.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if not PagesManager.uses_pages_directory:
        return
    if st.session_state.get("state.entrypoint_rerun"):
        # Already rerun once in this session (the test harness resets the mode on every run):
        # run the page as it is, with the state keeping app.py would have done.
        keep_widget_state()
        return
    st.session_state["state.entrypoint_rerun"] = True
    PagesManager.uses_pages_directory = False
    st.rerun()
