from __future__ import annotations

from tests.services.generate3d.claimed import two_processes

__all__ = ["two_processes"]
