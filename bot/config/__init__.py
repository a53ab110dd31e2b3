"""Lumi's settings: one `Settings` object, read once from the environment and `.env`, passed down to
constructors (`settings.py`). Its groups of variables are declared in classes it inherits: the
deployment (`deployment.py`), the inference service (`serving.py`) and the blob store (`blobs.py`)."""

from bot.config.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
