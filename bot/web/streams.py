"""A cap on live event streams (`/jobs/<id>/events`), per client address and in total.

Each stream holds a connection and a subscription for as long as a job runs, so without a cap one client
(or a thousand) can hold the server's attention until health checks slow down. A stream over either cap is
refused with 503, `Retry-After` and a sentence saying which cap; the viewer page then follows the job by
reading `/jobs/<id>` now and then instead.

The client address is the connection's peer. Behind a reverse proxy every client has the proxy's address:
there, set WEB_SSE_MAX_PER_CLIENT to WEB_SSE_MAX_CONNECTIONS and let the proxy limit each client.
A stream whose client went away frees its slot at its next write (a keep-alive at the latest).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

RETRY_AFTER_S = 30


class StreamLimits:
    """Counts open streams; `slot()` holds one for the duration of a stream, or refuses with 503."""

    def __init__(self, *, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._open: Counter[str] = Counter()

    @property
    def open_streams(self) -> int:
        return sum(self._open.values())

    def open_from(self, client: str) -> int:
        return self._open[client]

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        if self._open[client] >= self.per_client:
            raise _refused(
                f"Too many live progress streams are open from your address (at most {self.per_client}). "
                "Close other viewer tabs, or reload this page in a minute."
            )
        if self.open_streams >= self.total:
            raise _refused(
                f"This Lumi server is at its limit of {self.total} live progress streams. "
                "Reload this page in a minute."
            )
        self._open[client] += 1
        try:
            yield
        finally:
            self._open[client] -= 1
            if not self._open[client]:
                del self._open[client]


def _refused(text: str) -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(text=text, headers={"Retry-After": str(RETRY_AFTER_S)})


STREAM_LIMITS = web.AppKey("stream_limits", StreamLimits)
