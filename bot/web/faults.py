"""Faults the web side answers with a sentence instead of a 500 and a traceback per request.

- A database that fails (server down, database dropped, a table missing or damaged) answers 503 with a
  sentence and `Retry-After`, and logs one line saying what failed: the fault is the operator's to fix,
  and every request would otherwise log the same traceback.
- A request the HTTP parser refuses (a 100 kB URL, a malformed request line) is the client's fault:
  aiohttp answers 400 itself, and `protocol_logger()` logs it as one line instead of a traceback.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from storage.db import DatabaseUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_S = 30
DATABASE_UNAVAILABLE_TEXT = (
    "Lumi's database is not answering correctly right now, so this page cannot be shown. "
    "Try again in a minute; if it lasts, the server's log says why."
)
STORAGE_UNAVAILABLE_TEXT = (
    "Lumi cannot read its storage right now, so this page cannot be shown. "
    "Try again in a minute; if it lasts, the server's log says why."
)


# What a failing database raises: SQLAlchemy's errors, and Lumi's own when it cannot connect.
DATABASE_FAULTS = (SQLAlchemyError, DatabaseUnavailable)


def reason(error: BaseException) -> str:
    """The first line of what failed, short enough for one log line."""
    if isinstance(error, DBAPIError):
        error = error.orig or error
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:300]


def _response_started(request: web.Request) -> bool:
    # Once bytes went out (an event stream), a 503 cannot replace the response: the error propagates.
    return request.writer.output_size > 0


@web.middleware
async def storage_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DATABASE_FAULTS as error:
        if _response_started(request):
            raise
        log.error("%s %s: the database failed: %s", request.method, request.path, reason(error))
        raise web.HTTPServiceUnavailable(
            text=DATABASE_UNAVAILABLE_TEXT, headers={"Retry-After": str(RETRY_AFTER_S)}
        ) from None
    except OSError as error:
        # A client that went away is not a fault of Lumi's storage; neither is anything after the start.
        if isinstance(error, ConnectionResetError | BrokenPipeError) or _response_started(request):
            raise
        log.error("%s %s: storage failed: %s", request.method, request.path, reason(error))
        raise web.HTTPServiceUnavailable(
            text=STORAGE_UNAVAILABLE_TEXT, headers={"Retry-After": str(RETRY_AFTER_S)}
        ) from None


class _ClientErrorsInOneLine(logging.Filter):
    """Turns aiohttp's "Error handling request" traceback for a request it could not parse into one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError) or not 400 <= error.code < 500:
            return True
        client = record.args[0] if isinstance(record.args, tuple) and record.args else "a client"
        # The class name, not aiohttp's message: that quotes the client's bytes, escape sequences included.
        log.info("refused a malformed request from %s (%d %s)", client, error.code, type(error).__name__)
        return False


def protocol_logger() -> logging.Logger:
    """The logger for aiohttp's connection handlers (`AppRunner(logger=...)`)."""
    logger = logging.getLogger("bot.web.protocol")
    if not any(isinstance(f, _ClientErrorsInOneLine) for f in logger.filters):
        logger.addFilter(_ClientErrorsInOneLine())
    return logger
