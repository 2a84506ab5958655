"""Helpers for the Train page: size fields per family, output folders, the session's models."""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from pathlib import Path

from stmem_viz.models.jobs import TrainingJob
from stmem_viz.ui import state

FAMILIES = ["story-entnet", "story-memn2n", "story-gpt"]

# (size name, label, default, minimum, maximum) per family, as the trainers name the sizes.
SIZE_FIELDS: dict[str, list[tuple[str, str, int, int, int]]] = {
    "story-entnet": [("slots", "Slots", 20, 1, 200), ("dim", "Slot size", 100, 4, 512)],
    "story-memn2n": [
        ("dim", "Embedding size", 50, 4, 512),
        ("hops", "Hops", 3, 1, 10),
        ("memory_size", "Memory (sentences)", 50, 5, 500),
    ],
    "story-gpt": [
        ("num_hidden_layers", "Layers", 2, 1, 12),
        ("hidden_size", "Hidden size", 64, 16, 1024),
        ("num_attention_heads", "Heads", 4, 1, 16),
        ("num_key_value_heads", "Key/value heads", 2, 1, 16),
    ],
}


def new_output_folder(family: str) -> Path:
    """A fresh folder, outside the package, for one training run's checkpoint."""
    return Path(tempfile.mkdtemp(prefix=f"stmem-{family}-")) / family


def register_trained(job: TrainingJob) -> str:
    """Put a finished job's checkpoint into the session's model pickers; returns its name."""
    name = f"{job.family} (trained {time.strftime('%H:%M:%S')})"
    state.trained_models()[name] = str(job.out)
    return name


def checkpoint_zip(folder: Path) -> bytes:
    """Every file of a checkpoint folder in one zip, paths relative to the folder's parent."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(Path(folder).parent))
    return buffer.getvalue()
