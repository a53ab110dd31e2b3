"""Buttons under 3D messages. They survive restarts: the action and job id live in the custom_id."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

import discord

from cogs._buttons import handling_cog, persistent_view

CUSTOM_ID = "lumi:3d:{action}:{job_id}"
_TEMPLATE = r"lumi:3d:(?P<action>refine|regen|delete|cancel):(?P<job_id>[0-9a-f]{32})"


class JobAction(StrEnum):
    REFINE = "refine"
    REGENERATE = "regen"
    DELETE = "delete"
    CANCEL = "cancel"


_LOOKS: dict[JobAction, tuple[str, discord.ButtonStyle]] = {
    JobAction.REFINE: ("Refine texture", discord.ButtonStyle.primary),
    JobAction.REGENERATE: ("Regenerate", discord.ButtonStyle.secondary),
    JobAction.DELETE: ("Delete", discord.ButtonStyle.danger),
    JobAction.CANCEL: ("Cancel", discord.ButtonStyle.secondary),
}


class JobButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=_TEMPLATE):
    """discord.py rebuilds it from the custom_id of any message, so no view must be re-registered."""

    def __init__(self, action: JobAction, job_id: str) -> None:
        label, style = _LOOKS[action]
        super().__init__(
            discord.ui.Button(
                label=label, style=style, custom_id=CUSTOM_ID.format(action=action.value, job_id=job_id)
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> JobButton:
        return cls(JobAction(match["action"]), match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler = await handling_cog(
            interaction, "Generate3D", unavailable="3D generation is not running right now."
        )
        if handler is not None:
            await handler.on_job_button(interaction, self.action, self.job_id)


def _view(job_id: str, actions: tuple[JobAction, ...]) -> discord.ui.View:
    return persistent_view(JobButton(action, job_id) for action in actions)


def result_view(job_id: str) -> discord.ui.View:
    return _view(job_id, (JobAction.REFINE, JobAction.REGENERATE, JobAction.DELETE))


def running_view(job_id: str) -> discord.ui.View:
    return _view(job_id, (JobAction.CANCEL,))


def failed_view(job_id: str) -> discord.ui.View:
    return _view(job_id, (JobAction.REGENERATE,))
