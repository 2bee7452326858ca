"""Where metrics go: ``metrics.jsonl`` in the run directory always, W&B as well with ``logger=wandb``.

The loop hands every log/eval event to ``log(record)`` and every text sample to ``sample(step, text)``;
only rank 0 builds a logger.
"""

from pathlib import Path
from typing import Any

from tinygpt.errors import UserError
from tinygpt.training.metrics import append_record


class NullLogger:
    """What ranks other than 0 log to: nothing."""

    run_id: str | None = None

    def log(self, record: dict[str, Any]) -> None:
        pass

    def sample(self, step: int, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class MetricsLogger(NullLogger):
    """``logger=console``: one JSON object per event in ``metrics.jsonl`` (the console gets log lines);
    a non-finite value (a diverged loss) is written as null, so every line is strict JSON."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any], run_id: str | None = None):
        self.run_dir = Path(run_dir)

    def log(self, record: dict[str, Any]) -> None:
        append_record(self.run_dir, record)


class WandbLogger(MetricsLogger):
    """``logger=wandb``: metrics.jsonl plus a W&B run whose files live in the run directory.

    The run id is saved in the checkpoint, so ``resume=true`` continues the same W&B run. Works with
    ``WANDB_MODE=offline`` or ``disabled`` and then never asks for a login.
    """

    def __init__(
        self,
        run_dir: str | Path,
        config: dict[str, Any],
        run_id: str | None = None,
        project: str = "tinygpt",
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        mode: str | None = None,
    ):
        super().__init__(run_dir, config)
        try:
            import wandb  # imported only when chosen: it costs ~0.4 s
        except ImportError as exc:
            raise UserError("logger=wandb needs wandb: pip install -e '.[wandb]' in the checkout") from exc
        self._wandb = wandb
        self.run = self._start(
            project=project,
            entity=entity,
            group=group,
            tags=list(tags or []),
            config=config,
            dir=str(run_dir),
            id=run_id,
            resume="allow" if run_id else None,
            mode=mode,
        )
        self.run_id = self.run.id
        self._samples: list[list[Any]] = []

    def _start(self, **settings: Any) -> Any:
        """``wandb.init``; a missing login is a user's fix, said in one line."""
        try:
            return self._wandb.init(**settings)
        except self._wandb.errors.UsageError as exc:
            raise UserError(
                f"logger=wandb could not start a W&B run ({exc}); log in with `wandb login` (or set "
                "WANDB_API_KEY), or log locally with WANDB_MODE=offline (WANDB_MODE=disabled: no W&B at all)"
            ) from exc

    def log(self, record: dict[str, Any]) -> None:
        super().log(record)
        self.run.log({k: v for k, v in record.items() if k not in ("step", "time")}, step=record["step"])

    def sample(self, step: int, text: str) -> None:
        self._samples.append([step, text])  # a W&B table is immutable: log the growing table anew
        self.run.log({"samples": self._wandb.Table(columns=["step", "text"], data=self._samples)}, step=step)

    def close(self) -> None:
        self.run.finish()
        self._wandb.teardown()  # wandb caches its settings per process; the next run reads them anew
