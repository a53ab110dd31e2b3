"""What `/lumi status` and `/healthz` report: version, uptime, database, models and queues."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from inference.registry import ModelRegistry, ModelStatus
from storage.db import Database, DatabaseUnavailable


@dataclass(frozen=True)
class StatusReport:
    version: str
    uptime_s: float
    database_backend: str
    database_ok: bool
    gateway_latency_ms: float | None
    models: list[ModelStatus] = field(default_factory=list)
    # Why the database is not ok, in one sentence (None when it is).
    database_problem: str | None = None

    @property
    def models_loaded(self) -> list[str]:
        return [m.name for m in self.models if m.loaded]

    @property
    def queue_depths(self) -> dict[str, int]:
        return {m.name: m.queue_depth for m in self.models}


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


class StatusService:
    def __init__(self, *, version: str, database: Database, registry: ModelRegistry) -> None:
        self._version = version
        self._database = database
        self._registry = registry
        self._started = time.monotonic()

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started

    async def report(self, *, gateway_latency_s: float | None = None) -> StatusReport:
        problem = None
        try:
            # Every table, not only the connection: one dropped or damaged table breaks the features using it.
            await self._database.check_tables()
        except DatabaseUnavailable as error:
            problem = str(error)
        except Exception as error:
            problem = f"the database check failed: {type(error).__name__}: {error}"
        latency_ms = None
        if gateway_latency_s is not None and gateway_latency_s == gateway_latency_s:  # NaN before first beat
            latency_ms = round(gateway_latency_s * 1000, 1)
        return StatusReport(
            version=self._version,
            uptime_s=self.uptime_s,
            database_backend=self._database.backend,
            database_ok=problem is None,
            gateway_latency_ms=latency_ms,
            models=self._registry.snapshot(),
            database_problem=problem,
        )
