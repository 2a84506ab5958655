"""Training in a background thread, so that a page stays responsive and can stop it early."""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from stmem_viz import StmemError
from stmem_viz.models.training import TrainProgress, TrainResult

log = logging.getLogger(__name__)
_live_jobs: weakref.WeakSet[TrainingJob] = weakref.WeakSet()


@atexit.register
def _stop_live_jobs() -> None:
    """Stop running jobs before the interpreter exits: torch must not be torn down under them."""
    for job in list(_live_jobs):
        job.stop()
        job.join(timeout=30)


class TrainingJob:
    """One call of :func:`stmem_viz.models.train.train` running in a daemon thread.

    The thread reports through the trainer's progress callback; :meth:`stop` makes the next
    report answer False, so the trainer stops and keeps the best model so far.
    """

    def __init__(self, family: str, out: Path, **train_kwargs: Any) -> None:
        self.family = family
        self.out = Path(out)
        self.train_kwargs = train_kwargs
        self.history: list[TrainProgress] = []
        self.result: TrainResult | None = None
        self.error: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"train-{family}", daemon=True)

    def start(self) -> TrainingJob:
        self.started_at = time.monotonic()
        _live_jobs.add(self)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the trainer to stop at its next report."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _on_progress(self, report: TrainProgress) -> bool:
        self.history.append(report)
        return not self._stop.is_set()

    def _run(self) -> None:
        from stmem_viz.models.train import train

        try:
            self.result = train(
                self.family, out=self.out, progress=self._on_progress, **self.train_kwargs
            )
        except StmemError as error:
            self.error = str(error)
        except Exception as error:  # a thread must not die silently: the page shows this
            log.exception("training %s failed", self.family)
            self.error = f"Training failed: {type(error).__name__}: {error}"
        finally:
            self.finished_at = time.monotonic()
