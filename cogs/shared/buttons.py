"""Plumbing shared by the persistent buttons under bot messages.

The buttons are ``DynamicItem``s rebuilt from their custom_id after a restart, so they hold no reference
to the cog that handles them: the click finds the cog by name at that moment. Every such custom_id reads
``lumi:<feature>:<action>:<target>`` (``lumi:3d:refine:<job id>``, ``lumi:mod:restore:<case id>``);
``PersistentButton`` writes and parses it once for all features, and claims each click before it is
handled (``bot.command_tree``), so a click Discord delivers twice is handled once, by one process.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any, ClassVar, Final, Generic, Self, TypeVar, get_args, get_origin

import discord

from bot.command_tree import first_delivery_or_stand_back

BUTTON_ID: Final = "lumi:{feature}:{action}:{target}"

ActionT = TypeVar("ActionT", bound=StrEnum)
TargetT = TypeVar("TargetT")

ButtonLook = tuple[str, discord.ButtonStyle]
"""A button's label and style."""


class PersistentButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    Generic[ActionT, TargetT],
    template=r"lumi:(?P<feature>[^:]+):(?P<action>[^:]+):(?P<target>.+)",
):
    """A button whose custom_id ``lumi:<feature>:<action>:<target>`` holds all its state.

    discord.py rebuilds it from the custom_id of any message once the subclass is registered with
    ``add_dynamic_items``, so no view must be re-added after a restart. A subclass gives, as type
    arguments, its action enum and its target type (``str`` or ``int``: one built from the id's text);
    in its class line the ``feature`` part of the id, the regular expression its ``target`` ids match
    and each action's label and style (``looks``); as class attributes the name of the ``cog`` that
    handles its clicks and what to tell the clicker when that cog is not loaded (``unavailable``). It
    implements ``clicked``, with ``self.action`` and ``self.target``.
    """

    cog: ClassVar[str]
    unavailable: ClassVar[str]
    _feature: ClassVar[str]
    _actions: ClassVar[Callable[[str], Any]]
    _read_target: ClassVar[Callable[[str], Any]]
    _looks: ClassVar[Mapping[Any, ButtonLook]]

    def __init_subclass__(cls, *, feature: str, target: str, looks: Mapping[Any, ButtonLook]) -> None:
        actions, read_target = _type_arguments(cls)
        unstyled = [action for action in actions if action not in looks]
        if unstyled:
            raise TypeError(f"{cls.__name__}: no label and style for {unstyled}")
        choices = "|".join(re.escape(action.value) for action in actions)
        super().__init_subclass__(
            template=f"lumi:{re.escape(feature)}:(?P<action>{choices}):(?P<target>{target})"
        )
        cls._feature = feature
        cls._actions = actions
        cls._read_target = read_target
        cls._looks = looks

    def __init__(self, action: ActionT, target: TargetT, *, disabled: bool = False) -> None:
        label, style = self._looks[action]
        custom_id = BUTTON_ID.format(feature=self._feature, action=action.value, target=target)
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=custom_id, disabled=disabled))
        self.action = action
        self.target = target

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(cls._actions(match["action"]), cls._read_target(match["target"]))

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        # discord.py runs this before `callback`; False drops a click delivered twice.
        return await first_delivery_or_stand_back(interaction)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler = await handling_cog(interaction, self.cog, unavailable=self.unavailable)
        if handler is not None:
            await self.clicked(handler, interaction)

    async def clicked(self, handler: Any, interaction: discord.Interaction[Any]) -> None:
        """Hand the click to ``handler``, the loaded cog named ``cog``."""
        raise NotImplementedError


def _type_arguments(button: type[PersistentButton[Any, Any]]) -> tuple[type[StrEnum], type[str | int]]:
    """The action enum and target type a button class gives ``PersistentButton`` as type arguments."""
    for base in button.__dict__.get("__orig_bases__", ()):
        if get_origin(base) is PersistentButton:
            actions, target = get_args(base)
            if isinstance(actions, type) and issubclass(actions, StrEnum) and target in (str, int):
                return actions, target
    raise TypeError(f"{button.__name__} must subclass PersistentButton[<StrEnum>, str | int]")


async def handling_cog(
    interaction: discord.Interaction[Any], cog_name: str, *, unavailable: str
) -> Any | None:
    """The loaded cog called ``cog_name``; when it is not loaded, tell the clicker ``unavailable``.

    A feature that failed to load or was unloaded must still answer the click, or Discord shows
    "interaction failed" with no explanation.
    """
    get_cog = getattr(interaction.client, "get_cog", None)
    handler = get_cog(cog_name) if get_cog is not None else None
    if handler is None:
        await interaction.response.send_message(unavailable, ephemeral=True)
    return handler


def persistent_view(buttons: Iterable[discord.ui.Item[Any]]) -> discord.ui.View:
    """A view that never times out, so its buttons keep working for as long as the message exists."""
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(button)
    return view
