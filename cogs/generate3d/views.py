"""Buttons under 3D messages. They survive restarts: the action and job id live in the custom_id."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import discord

from cogs.shared.buttons import ButtonLook, PersistentButton, persistent_view


class JobAction(StrEnum):
    REFINE = "refine"
    REGENERATE = "regen"
    DELETE = "delete"
    CANCEL = "cancel"


_LOOKS: dict[JobAction, ButtonLook] = {
    JobAction.REFINE: ("Refine texture", discord.ButtonStyle.primary),
    JobAction.REGENERATE: ("Regenerate", discord.ButtonStyle.secondary),
    JobAction.DELETE: ("Delete", discord.ButtonStyle.danger),
    JobAction.CANCEL: ("Cancel", discord.ButtonStyle.secondary),
}


class JobButton(PersistentButton[JobAction, str], feature="3d", target="[0-9a-f]{32}", looks=_LOOKS):
    """``lumi:3d:<action>:<job id>``, handled by the Generate3D cog."""

    cog = "Generate3D"
    unavailable = "3D generation is not running right now."

    async def clicked(self, handler: Any, interaction: discord.Interaction[Any]) -> None:
        await handler.on_job_button(interaction, self.action, self.target)


def _view(job_id: str, actions: tuple[JobAction, ...]) -> discord.ui.View:
    return persistent_view(JobButton(action, job_id) for action in actions)


def result_view(job_id: str) -> discord.ui.View:
    return _view(job_id, (JobAction.REFINE, JobAction.REGENERATE, JobAction.DELETE))


def running_view(job_id: str) -> discord.ui.View:
    return _view(job_id, (JobAction.CANCEL,))


def failed_view(job_id: str) -> discord.ui.View:
    return _view(job_id, (JobAction.REGENERATE,))
