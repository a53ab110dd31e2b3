"""SNS-style photo comments: faces, emotions and objects become labels, and a backend (Lumi's own comment
model, an LLM, or templates) writes a warm comment. No Discord here.

CommentService (service) answers a new photo post in one call: it admits it, takes the photos moderation
downloaded with its verdict or fetches them (photos), screens them against that verdict (gate), runs
perception and writes the comment (backends, templates); build wires it from the settings; showcase
lays every step open for the playground.

The names are resolved on first use, as in `inference.commenter`: `lumi comment --labels` needs only the
writer (backends), and importing the service module would also load the database, Redis and moderation
code it never uses, over a second of its start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.services.comments.backends import (
        BACKEND_NAMES,
        BackendName,
        BackendUnavailable,
        CommentWriter,
        LlmBackend,
        WrittenComment,
        llm_backend,
    )
    from bot.services.comments.build import build_comment_service, build_writer, comment_options
    from bot.services.comments.service import CommentService, GuildComments, PhotoComment
    from bot.services.comments.showcase import BackendTry, CommentShowcase, showcase_labels, showcase_photo

_EXPORTS = {
    "BACKEND_NAMES": "bot.services.comments.backends",
    "BackendName": "bot.services.comments.backends",
    "BackendUnavailable": "bot.services.comments.backends",
    "CommentWriter": "bot.services.comments.backends",
    "LlmBackend": "bot.services.comments.backends",
    "WrittenComment": "bot.services.comments.backends",
    "llm_backend": "bot.services.comments.backends",
    "build_comment_service": "bot.services.comments.build",
    "build_writer": "bot.services.comments.build",
    "comment_options": "bot.services.comments.build",
    "CommentService": "bot.services.comments.service",
    "GuildComments": "bot.services.comments.service",
    "PhotoComment": "bot.services.comments.service",
    "BackendTry": "bot.services.comments.showcase",
    "CommentShowcase": "bot.services.comments.showcase",
    "showcase_labels": "bot.services.comments.showcase",
    "showcase_photo": "bot.services.comments.showcase",
}

__all__ = [
    "BACKEND_NAMES",
    "BackendName",
    "BackendTry",
    "BackendUnavailable",
    "CommentService",
    "CommentShowcase",
    "CommentWriter",
    "GuildComments",
    "LlmBackend",
    "PhotoComment",
    "WrittenComment",
    "build_comment_service",
    "build_writer",
    "comment_options",
    "llm_backend",
    "showcase_labels",
    "showcase_photo",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bot.services.comments' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
