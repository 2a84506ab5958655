"""The models shipped inside the package, addressed as ``bundled:NAME``.

Each bundled model is a folder under ``stmem_viz/bundled/``. Hugging Face models are standard
``save_pretrained`` folders; memory networks hold ``config.json`` and ``model.safetensors``.
A ``training.json`` beside the weights records the command that produced them.
"""

from __future__ import annotations

import json
from pathlib import Path

from stmem_viz import StmemError

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled"
PREFIX = "bundled:"


def list_bundled() -> list[str]:
    """Names of the bundled models present in this installation, sorted."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(
        p.name for p in BUNDLED_DIR.iterdir() if p.is_dir() and (p / "config.json").is_file()
    )


def is_bundled_spec(spec: str) -> bool:
    return spec.strip().startswith(PREFIX)


def bundled_path(spec_or_name: str) -> Path:
    """Folder of a bundled model, from ``bundled:NAME`` or ``NAME``.

    Raises:
        StmemError: no bundled model has that name.
    """
    name = spec_or_name.strip().removeprefix(PREFIX)
    path = BUNDLED_DIR / name
    if not (path / "config.json").is_file():
        known = ", ".join(list_bundled()) or "none"
        raise StmemError(f"There is no bundled model '{name}'. Bundled models: {known}.")
    return path


def bundled_family(spec_or_name: str) -> str:
    """ "hf" for a Hugging Face folder, else the memory-network family named in its config."""
    config = json.loads((bundled_path(spec_or_name) / "config.json").read_text())
    return config.get("stmem_family", "hf")
