"""A rich progress bar for long work that stays silent when disabled (tests, non-main ranks)."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(self, total: int, *, enabled: bool = True, console: Console | None = None,
                 description: str = "train"):
        self.enabled = enabled
        if not enabled:
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  kimg {task.fields[kimg]:.1f}  {task.fields[rate]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console or Console(stderr=True),
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total, loss=float("nan"), kimg=0.0, rate="")
        self.progress.start()

    def advance_to(self, completed: int) -> None:
        if self.enabled:
            self.progress.update(self.task, completed=completed)

    def update(self, completed: int, *, loss: float, kimg: float) -> None:
        if not self.enabled:
            return
        task = self.progress.tasks[0]
        speed = task.speed  # steps/s as rich estimates it
        rate = f"{speed * kimg / max(completed, 1):.2f} kimg/s" if speed else ""
        self.progress.update(self.task, completed=completed, loss=loss, kimg=kimg, rate=rate)

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()
