"""stmem-viz: the Streamlit entry point. Routes to the pages and keeps choices across them."""

from pathlib import Path

import streamlit as st

from stmem_viz.ui.state import keep_widget_state

st.set_page_config(page_title="stmem-viz", page_icon=":material/neurology:", layout="wide")
keep_widget_state()

HERE = Path(__file__).parent
PAGES = [
    ("pages/attention.py", "Attention", ":material/visibility:"),
    ("pages/memory.py", "Memory", ":material/memory:"),
    ("pages/forgetting.py", "Forgetting", ":material/trending_down:"),
    ("pages/train.py", "Train", ":material/model_training:"),
]
pages = [
    st.Page(path, title=title, icon=icon, default=(i == 0))
    for i, (path, title, icon) in enumerate(PAGES)
    if (HERE / path).is_file()
]
st.navigation(pages).run()
