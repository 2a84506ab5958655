"""stmem-viz: the Streamlit entry point. Routes to the pages and keeps choices across them."""

from pathlib import Path

import streamlit as st

from stmem_viz.ui.state import keep_widget_state

st.set_page_config(page_title="stmem-viz", page_icon="🧠", layout="wide")
keep_widget_state()

HERE = Path(__file__).parent
PAGES = [
    ("pages/attention.py", "Attention", "🔍"),
    ("pages/memory.py", "Memory", "🗂️"),
    ("pages/forgetting.py", "Forgetting", "📉"),
    ("pages/train.py", "Train", "🏋️"),
]
pages = [
    st.Page(path, title=title, icon=icon, default=(i == 0))
    for i, (path, title, icon) in enumerate(PAGES)
    if (HERE / path).is_file()
]
st.navigation(pages).run()
