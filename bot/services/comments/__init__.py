"""SNS-style photo comments: faces, emotions and objects become labels, and a backend (Lumi's own comment
model, an LLM, or templates) writes a warm comment. No Discord here.

CommentService (service) answers a new photo post in one call: it admits it, takes the photos moderation
downloaded with its verdict or fetches them (photos), screens them against that verdict (gate), runs
perception and writes the comment (backends, templates); build wires it from the settings; showcase
lays every step open for the playground.
"""

from __future__ import annotations

from bot.services.comments.backends import (
    BACKEND_NAMES,
    BackendName,
    BackendUnavailable,
    LlmBackend,
    llm_backend,
)
from bot.services.comments.build import build_comment_service, comment_options
from bot.services.comments.service import CommentService, GuildComments, PhotoComment
from bot.services.comments.showcase import BackendTry, CommentShowcase, showcase_labels, showcase_photo

__all__ = [
    "BACKEND_NAMES",
    "BackendName",
    "BackendTry",
    "BackendUnavailable",
    "CommentService",
    "CommentShowcase",
    "GuildComments",
    "LlmBackend",
    "PhotoComment",
    "build_comment_service",
    "comment_options",
    "llm_backend",
    "showcase_labels",
    "showcase_photo",
]
