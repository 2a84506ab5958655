"""Test-wide settings: never touch the network, keep CPU threads modest."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

# Session fixtures with tiny Hugging Face models saved to folders: tiny_model_dirs, tiny_loaded.
pytest_plugins = ["tiny_models"]
