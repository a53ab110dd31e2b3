"""The moderator buttons under an alert. They survive restarts: the case id and action live in custom_id."""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.services.moderation import CaseChoice, allowed_choices
from cogs._buttons import handling_cog, persistent_view
from storage.models import ModerationCase

CUSTOM_ID = "lumi:mod:{action}:{case_id}"
_TEMPLATE = r"lumi:mod:(?P<action>confirm|restore|timeout|dismiss):(?P<case_id>\d+)"

_LOOKS: dict[CaseChoice, tuple[str, discord.ButtonStyle]] = {
    CaseChoice.CONFIRM: ("Confirm", discord.ButtonStyle.danger),
    CaseChoice.RESTORE: ("Restore", discord.ButtonStyle.success),
    CaseChoice.TIMEOUT: ("Timeout author", discord.ButtonStyle.secondary),
    CaseChoice.DISMISS: ("Dismiss", discord.ButtonStyle.secondary),
}


class CaseButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=_TEMPLATE):
    """One button; discord.py rebuilds it from the custom_id of any message, so no view must be re-added."""

    def __init__(self, choice: CaseChoice, case_id: int, *, disabled: bool = False) -> None:
        label, style = _LOOKS[choice]
        super().__init__(
            discord.ui.Button(
                label=label,
                style=style,
                custom_id=CUSTOM_ID.format(action=choice.value, case_id=case_id),
                disabled=disabled,
            )
        )
        self.choice = choice
        self.case_id = case_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> CaseButton:
        return cls(CaseChoice(match["action"]), int(match["case_id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler = await handling_cog(
            interaction, "Moderation", unavailable="Moderation is not running right now."
        )
        if handler is not None:
            await handler.on_case_button(interaction, self.choice, self.case_id)


def case_view(case: ModerationCase) -> discord.ui.View:
    """The four buttons, the ones that no longer apply disabled (so the alert shows what is left)."""
    assert case.id is not None
    allowed = allowed_choices(case)
    return persistent_view(
        CaseButton(choice, case.id, disabled=choice not in allowed) for choice in CaseChoice
    )
