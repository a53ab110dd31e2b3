from __future__ import annotations

from aiohttp import web

from bot.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
PLAYGROUND = web.AppKey("playground", bool)
# Where /files redirects to (a remote blob store's origins): pages must let scripts and images reach them.
BLOB_ORIGINS = web.AppKey("blob_origins", tuple)
