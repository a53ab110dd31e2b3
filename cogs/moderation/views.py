"""The moderator buttons under an alert. They survive restarts: the case id and action live in custom_id."""

from __future__ import annotations

from typing import Any

import discord

from bot.services.moderation import CaseChoice, ModerationCase, allowed_choices
from cogs.shared.buttons import ButtonLook, PersistentButton, persistent_view

_LOOKS: dict[CaseChoice, ButtonLook] = {
    CaseChoice.CONFIRM: ("Confirm", discord.ButtonStyle.danger),
    CaseChoice.RESTORE: ("Restore", discord.ButtonStyle.success),
    CaseChoice.TIMEOUT: ("Timeout author", discord.ButtonStyle.secondary),
    CaseChoice.DISMISS: ("Dismiss", discord.ButtonStyle.secondary),
}


class CaseButton(PersistentButton[CaseChoice, int], feature="mod", target=r"\d+", looks=_LOOKS):
    """``lumi:mod:<choice>:<case id>``, handled by the Moderation cog."""

    cog = "Moderation"
    unavailable = "Moderation is not running right now."

    async def clicked(self, handler: Any, interaction: discord.Interaction[Any]) -> None:
        await handler.on_case_button(interaction, self.action, self.target)


def case_view(case: ModerationCase) -> discord.ui.View:
    """The four buttons, the ones that no longer apply disabled (so the alert shows what is left)."""
    assert case.id is not None
    allowed = allowed_choices(case)
    return persistent_view(
        CaseButton(choice, case.id, disabled=choice not in allowed) for choice in CaseChoice
    )
