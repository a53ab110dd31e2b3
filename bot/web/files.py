"""`/files/<signed token>`: serves a stored asset when its link is genuine and not expired.

The token (Lumi's own HMAC, `storage.links`) stays the public address and decides 403/404/410 as
before. A folder store's file is then streamed from here; a remote store's (Azure Blob, S3) is answered
with a 302 to a read-only URL of the store that works for `SIGNED_URL_TTL_S` and names the file, so the
bytes do not pass through Lumi (BLOB_REDIRECT=false streams them here instead).

A file of a job whose files expired under the 3D retention answers 410 with a sentence saying so, even
when its blob is still stored (deletion pending) or the link itself expired too. A token far longer than
any Lumi issues, and a genuine token for a key the blob store would refuse, answer 404 at once.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot.web.keys import RUNTIME
from storage.blobs import InvalidBlobKey, content_disposition, validate_key
from storage.links import MAX_TOKEN_CHARS, LinkExpired, LinkTampered
from storage.repo import assets as repo_assets

log = logging.getLogger(__name__)

# Long enough to start a download or the viewer's fetch after the redirect; short, since the URL is a
# bearer credential that no longer passes through Lumi's checks (expiry, retention, deletion).
SIGNED_URL_TTL_S = 300


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

    if runtime.settings.blob_redirect:
        url = await runtime.blobs.signed_url(
            key, ttl_s=SIGNED_URL_TTL_S, filename=filename, content_type=content_type
        )
        if url is not None:
            log.info("redirected %s to the blob store", key)
            raise web.HTTPFound(url, headers={"Cache-Control": "no-store"})

    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Length": str(info.size),
            "Content-Disposition": content_disposition(filename),
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
