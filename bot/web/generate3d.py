"""Web side of 3D generation: the viewer page, the job's JSON and its progress as Server-Sent Events.

- ``GET /view/<job>``: the model in the browser (three.js, served by Lumi from the npm package installed
  at set-up, never from a CDN), the prompt, download links, live progress while the job runs;
- ``GET /jobs/<job>``: the job and signed download links as JSON (``files_expired``: why there are no links
  once the retention period deleted the files);
- ``GET /jobs/<job>/events``: ``event: progress`` with the job JSON on every change, ``event: done``
  once it ended, ``:`` comments as keep-alives; capped per client address and in total (`streams`).
Job ids are 128-bit random, so a link works like an unlisted share link: whoever has it can look.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from aiohttp import web

from bot.services.generate3d import JobResult, JobSnapshot, files_expired_note
from bot.web.faults import DATABASE_FAULTS, reason
from bot.web.keys import RUNTIME
from bot.web.streams import STREAM_LIMITS

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
THREE_DIR = STATIC_DIR / "node_modules" / "three"
KEEPALIVE_S = 15.0


def setup(app: web.Application) -> None:
    app.router.add_get("/view/{job_id}", viewer_page)
    app.router.add_get("/jobs/{job_id}", job_json)
    app.router.add_get("/jobs/{job_id}/events", job_events)
    app.router.add_static("/static/gen3d/", STATIC_DIR / "gen3d", append_version=False)
    if THREE_DIR.is_dir():
        # Only the parts the page imports, not the package's docs and sources.
        app.router.add_static("/static/vendor/three/build/", THREE_DIR / "build")
        app.router.add_static("/static/vendor/three/addons/", THREE_DIR / "examples" / "jsm")
    else:
        log.warning(
            "three.js is not installed under %s: the 3D viewer page cannot render models "
            "(run `make install`, which runs npm ci there)",
            STATIC_DIR,
        )


def viewer_assets_installed() -> bool:
    return (THREE_DIR / "build" / "three.module.js").is_file()


def _template() -> Template:
    text = resources.files("bot.web").joinpath("templates/viewer.html").read_text(encoding="utf-8")
    return Template(text)


async def _snapshot_or_404(request: web.Request) -> JobSnapshot:
    service = request.app[RUNTIME].generation
    snapshot = await service.snapshot(request.match_info["job_id"])
    if snapshot is None:
        raise web.HTTPNotFound(text="No such 3D job (it may have been deleted).")
    return snapshot


async def job_payload(request: web.Request, snapshot: JobSnapshot) -> dict[str, Any]:
    runtime = request.app[RUNTIME]
    body: dict[str, Any] = {"job": snapshot.to_json(), "assets": [], "glb_url": None, "thumbnail_url": None}
    body["viewer_url"] = f"{runtime.public_base_url}/view/{snapshot.job_id}"
    body["files_expired"] = None
    if snapshot.state.is_terminal:
        result: JobResult = await runtime.generation.result(snapshot.job_id)
        body["files_expired"] = files_expired_note(result.job)
        for asset in result.assets:
            url = runtime.download_url(asset.key)
            body["assets"].append(
                {
                    "kind": asset.kind,
                    "name": asset.name,
                    "filename": asset.filename,
                    "size": asset.size,
                    "url": url,
                }
            )
            if asset.kind == "model" and asset.name == "glb":
                body["glb_url"] = url
            elif asset.kind == "thumbnail":
                body["thumbnail_url"] = url
    return body


async def job_json(request: web.Request) -> web.Response:
    snapshot = await _snapshot_or_404(request)
    return web.json_response(await job_payload(request, snapshot), headers={"Cache-Control": "no-store"})


async def viewer_page(request: web.Request) -> web.Response:
    snapshot = await _snapshot_or_404(request)
    prompt = snapshot.enhanced_prompt or snapshot.prompt
    job = await request.app[RUNTIME].generation.get_job(snapshot.job_id) if snapshot.is_terminal else None
    expired = None if job is None else files_expired_note(job)
    page = _template().substitute(
        job_id=html.escape(snapshot.job_id),
        title=html.escape(snapshot.prompt[:80]),
        prompt=html.escape(prompt),
        state=html.escape(snapshot.state.value),
        assets_note=""
        if viewer_assets_installed()
        else '<p class="warning">The 3D viewer scripts are not installed on this server '
        "(an operator runs <code>make install</code>); the downloads below still work.</p>",
        files_note=""
        if expired is None
        else f'<p class="warning" id="files-expired">{html.escape(expired)}</p>',
    )
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def job_events(request: web.Request) -> web.StreamResponse:
    # The cap first: a flood of streams must not reach the database.
    with request.app[STREAM_LIMITS].slot(request.remote or "unknown"):
        return await _stream_events(request)


async def _stream_events(request: web.Request) -> web.StreamResponse:
    snapshot = await _snapshot_or_404(request)
    service = request.app[RUNTIME].generation
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx would otherwise hold events back
        }
    )
    await response.prepare(request)
    async with service.subscribe(snapshot.job_id) as queue:
        # Read again after subscribing, so a change between the first read and now is not missed.
        current = await service.snapshot(snapshot.job_id) or snapshot
        try:
            await response.write(_event("progress", await job_payload(request, current)))
            while not current.state.is_terminal:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        current = await queue.get()
                except TimeoutError:
                    # A job run by another process (the command line) publishes nothing here; its row
                    # still moves, so look at it now and then.
                    fresh = await service.snapshot(snapshot.job_id)
                    if fresh is None:
                        await response.write(_event("done", {"state": "deleted"}))
                        return response
                    if (fresh.state, fresh.progress) == (current.state, current.progress):
                        await response.write(b": keep-alive\n\n")
                        continue
                    current = fresh
                await response.write(_event("progress", await job_payload(request, current)))
            await response.write(_event("done", {"state": current.state.value}))
        except ConnectionResetError:
            # The browser went away (closed tab); leaving the block ends the subscription.
            return response
        except DATABASE_FAULTS as error:
            # Headers are sent, so no 503 now: end the stream; the browser's reconnection gets the 503.
            log.warning(
                "progress stream of job %s ended: the database failed: %s", snapshot.job_id, reason(error)
            )
            return response
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response
