"""stmem-viz: see how language models and memory networks hold, use and lose short-term memory.

Layers (each imports only from the ones below it):

- ``stmem_viz.ui``: Streamlit helpers shared by the pages.
- ``stmem_viz.plots``: pure figure builders (numpy/pandas in, plotly/altair out).
- ``stmem_viz.analysis``: attention metrics, memory traces, forgetting curves.
- ``stmem_viz.models``: loading and running models.
- ``stmem_viz.data``: the story world, bAbI files and the shared vocabulary.
"""

__version__ = "0.1.0"


class StmemError(Exception):
    """An error caused by user input, with a message a user can act on."""
