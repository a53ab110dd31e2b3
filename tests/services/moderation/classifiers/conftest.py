from __future__ import annotations

from tests.fakes.blob_emulators import azurite, moto_s3

__all__ = ["azurite", "moto_s3"]
