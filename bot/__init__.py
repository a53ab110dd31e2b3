"""Lumi: a Discord bot with in-process inference."""

__version__ = "0.1.0"
