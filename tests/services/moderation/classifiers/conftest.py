from __future__ import annotations

from tests.fakes.blob_emulators import azurite

__all__ = ["azurite"]
