"""What every trainer in this package reports, so the CLI and the Train page can show progress
the same way for a memory network and for a small Transformer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainProgress:
    """One report from a trainer, sent after every evaluation point."""

    epoch: int
    step: int
    total_steps: int
    loss: float
    val_accuracy: float | None
    elapsed_s: float


ProgressFn = Callable[[TrainProgress], bool]
"""Called with each report; returning False stops training early (the model so far is kept)."""


@dataclass
class TrainResult:
    """A trained model, its history, and the folder it was written to (None if not saved)."""

    model: Any
    history: list[TrainProgress] = field(default_factory=list)
    out: Path | None = None
    stopped_early: bool = False
