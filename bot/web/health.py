"""`/healthz` for orchestrators and `/metrics` for Prometheus."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from bot.web.keys import RUNTIME


async def healthz(request: web.Request) -> web.Response:
    """200 "ok", or 503 "degraded" with the database's problem when it, or one of its tables, fails."""
    runtime = request.app[RUNTIME]
    report = await runtime.status.report()
    database: dict[str, object] = {"backend": report.database_backend, "ok": report.database_ok}
    if report.database_problem is not None:
        database["problem"] = report.database_problem
    body = {
        "status": "ok" if report.database_ok else "degraded",
        "version": report.version,
        "uptime_s": round(report.uptime_s, 1),
        "database": database,
        "models": [
            {"name": m.name, "device": m.device, "loaded": m.loaded, "queue_depth": m.queue_depth}
            for m in report.models
        ],
    }
    return web.json_response(body, status=200 if report.database_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(REGISTRY)
    response = web.Response(body=payload)
    # CONTENT_TYPE_LATEST carries a charset parameter, which aiohttp wants set as a header, not content_type.
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
