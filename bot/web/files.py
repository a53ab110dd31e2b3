"""`/files/<signed token>`: streams a stored asset when its link is genuine and not expired.

A file of a job whose files expired under the 3D retention answers 410 with a sentence saying so, even
when its blob is still stored (deletion pending) or the link itself expired too. A token far longer than
any Lumi issues, and a genuine token for a key the blob store would refuse, answer 404 at once.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web

from bot.web.keys import RUNTIME
from storage.blobs import InvalidBlobKey, validate_key
from storage.links import MAX_TOKEN_CHARS, LinkExpired, LinkTampered
from storage.repo import assets as repo_assets

log = logging.getLogger(__name__)


async def download(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    token = request.match_info["token"]
    if len(token) > MAX_TOKEN_CHARS:
        raise web.HTTPNotFound(text="No such file.")
    try:
        key = runtime.links.verify(token)
    except LinkExpired as expired:
        note = await runtime.generation.expired_file_note(expired.key)
        raise web.HTTPGone(text=note or "This download link has expired. Ask Lumi for a new one.") from None
    except LinkTampered:
        raise web.HTTPForbidden(text="This download link is not valid.") from None
    try:
        validate_key(key)
    except InvalidBlobKey:
        # Signed with this secret, yet naming nothing the store could hold (say, '../etc/passwd').
        raise web.HTTPNotFound(text="No such file.") from None

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
