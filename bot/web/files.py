"""`/files/<signed token>`: streams a stored asset when its link is genuine and not expired.

A file of a job whose files expired under the 3D retention answers 410 with a sentence saying so, even
when its blob is still stored (deletion pending) or the link itself expired too.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web

from bot.web.keys import RUNTIME
from storage.links import LinkExpired, LinkTampered
from storage.repo import assets as repo_assets

log = logging.getLogger(__name__)


async def download(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    token = request.match_info["token"]
    try:
        key = runtime.links.verify(token)
    except LinkExpired as expired:
        note = await runtime.generation.expired_file_note(expired.key)
        raise web.HTTPGone(text=note or "This download link has expired. Ask Lumi for a new one.") from None
    except LinkTampered:
        raise web.HTTPForbidden(text="This download link is not valid.") from None

    # An expired job's blob may outlive its expiry (a failed deletion waits for the next clean-up round).
    note = await runtime.generation.expired_file_note(key)
    if note is not None:
        raise web.HTTPGone(text=note)
    info = await runtime.blobs.stat(key)
    if info is None:
        raise web.HTTPNotFound(text="This file is no longer stored.")
    async with runtime.database.session() as session:
        asset = await repo_assets.get_asset(session=session, key=key)
    filename = asset.filename if asset is not None and asset.filename else key.rsplit("/", 1)[-1]
    content_type = asset.content_type if asset is not None and asset.content_type else info.content_type

    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Length": str(info.size),
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(filename)}",
            "Cache-Control": "private, max-age=300",
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    if request.method != "HEAD":
        async for chunk in runtime.blobs.stream(key):
            await response.write(chunk)
    await response.write_eof()
    log.info("served %s (%d bytes)", key, info.size)
    return response
