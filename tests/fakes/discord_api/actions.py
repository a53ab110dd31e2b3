"""What users do, as gateway events (mixed into `FakeDiscord`): post messages, run slash and context-menu
commands, click buttons, submit modals. Each interaction action returns the INTERACTION_CREATE payload, which
`FakeDiscord.wait_for_callback` and `wait_for_reply` take.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

from tests.fakes.discord_api.entities import ChannelRef, FakeChannel, FakeMember, FakeRole, FakeUser, UserRef
from tests.fakes.discord_api.messages import MessageStore
from tests.fakes.discord_api.payloads import DEFAULT_ATTACHMENT_SIZE_LIMIT, FileSpec
from tests.fakes.discord_api.protocol import InteractionType, JsonDict, OptionType
from tests.fakes.discord_api.world import InteractionRecord


class UserActions(MessageStore):
    """Test actions: what users do, sent to the bot as gateway events."""

    async def post_message(
        self,
        channel: ChannelRef,
        author: UserRef,
        content: str = "",
        *,
        attachments: Sequence[FileSpec] = (),
        embeds: list[JsonDict] | None = None,
        reply_to: JsonDict | None = None,
        deliveries: int = 1,
    ) -> JsonDict:
        """A user posts a message (MESSAGE_CREATE); attachments are hosted on the fake CDN.

        `deliveries` > 1 sends the same MESSAGE_CREATE again, as Discord may after a resume or to a second
        session on the same shard."""
        target = self.channel(channel)
        hosted = [self.host_file(target.id, *spec) for spec in attachments]
        writer: FakeMember | FakeUser
        writer = self.member(author, self.guild_of(target)) if target.guild_id else self.user(author)
        extra: JsonDict = {}
        if reply_to is not None:
            reference = {"message_id": reply_to["id"], "channel_id": str(target.id), "type": 0}
            extra["message_reference"] = reference
            extra["referenced_message"] = reply_to
        message = await self.create_message(
            target,
            writer,
            content=content,
            attachments=hosted,
            embeds=embeds,
            message_type=19 if reply_to else 0,
            extra=extra,
        )
        for _ in range(deliveries - 1):
            await self.dispatch("MESSAGE_CREATE", message)
        return message

    async def slash_command(
        self,
        name: str,
        *,
        user: UserRef = "alice",
        channel: ChannelRef = "general",
        options: dict[str, Any] | None = None,
        subcommand: str | None = None,
        guild: bool = True,
        locale: str = "en-US",
        deliveries: int = 1,
    ) -> JsonDict:
        """A user runs `/name [group] [subcommand] option:value...` (INTERACTION_CREATE, type 2).

        `subcommand` may be "sub" or "group sub". Option types come from the synced command, so values are
        plain: a string, a number, a user/channel/role name, or a FileSpec for an attachment option.
        `deliveries` > 1 sends the same INTERACTION_CREATE again, as `post_message` does a message.
        """
        target = self.channel(channel) if guild else self.dm_channel(user)
        command = self.synced_command(name, guild=guild, guild_id=target.guild_id)
        path = subcommand.split() if subcommand else []
        schema = command.get("options", [])
        for part in path:
            branch = next((o for o in schema if o["name"] == part and o["type"] in (1, 2)), None)
            if branch is None:
                raise LookupError(f"/{name} has no subcommand {part!r} (has {[o['name'] for o in schema]})")
            schema = branch.get("options", [])
        resolved: JsonDict = {}
        values = [
            self._option_value(key, value, schema, resolved, target) for key, value in (options or {}).items()
        ]
        for part, kind in reversed(list(zip(path, _subcommand_types(len(path)), strict=True))):
            values = [{"type": kind, "name": part, "options": values}]
        data: JsonDict = {"id": command["id"], "name": name, "type": 1, "options": values}
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return await self._interact(
            InteractionType.APPLICATION_COMMAND, data, user, target, locale=locale, deliveries=deliveries
        )

    async def message_context_command(
        self, name: str, message: JsonDict, *, user: UserRef = "alice", locale: str = "en-US"
    ) -> JsonDict:
        """A user picks Apps → `name` on `message` (INTERACTION_CREATE, type 2, command type 3)."""
        target = self.channel(int(message["channel_id"]))
        command = self.synced_command(
            name, guild=target.guild_id is not None, command_type=3, guild_id=target.guild_id
        )
        data: JsonDict = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: message}},
        }
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return await self._interact(InteractionType.APPLICATION_COMMAND, data, user, target, locale=locale)

    async def click_button(
        self, message: JsonDict, custom_id: str, *, user: UserRef = "alice", deliveries: int = 1
    ) -> JsonDict:
        """A user clicks the button `custom_id` on a stored message (INTERACTION_CREATE, type 3);
        `deliveries` > 1 sends the same click again."""
        return await self.use_component(
            message, custom_id, user=user, component_type=2, deliveries=deliveries
        )

    async def use_component(
        self,
        message: JsonDict,
        custom_id: str,
        *,
        user: UserRef = "alice",
        component_type: int = 2,
        values: list[str] | None = None,
        deliveries: int = 1,
    ) -> JsonDict:
        """A user uses a component of a stored message: a button (type 2) or a select menu (type 3+,
        with `values`). The component must be on the message, as Discord only sends real clicks."""
        if not _has_component(message.get("components", []), custom_id):
            raise LookupError(f"message {message['id']} has no component with custom_id {custom_id!r}")
        data: JsonDict = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        target = self.channel(int(message["channel_id"]))
        return await self._interact(
            InteractionType.MESSAGE_COMPONENT, data, user, target, message=message, deliveries=deliveries
        )

    async def submit_modal(
        self,
        custom_id: str,
        fields: dict[str, str],
        *,
        user: UserRef = "alice",
        channel: ChannelRef = "general",
        deliveries: int = 1,
    ) -> JsonDict:
        """A user submits a modal (INTERACTION_CREATE, type 5) with text inputs by custom_id;
        `deliveries` > 1 sends the same submission again."""
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
            for key, value in fields.items()
        ]
        data = {"custom_id": custom_id, "components": rows}
        return await self._interact(
            InteractionType.MODAL_SUBMIT, data, user, self.channel(channel), deliveries=deliveries
        )

    def synced_command(
        self, name: str, *, guild: bool = True, command_type: int = 1, guild_id: int | None = None
    ) -> JsonDict:
        """The synced command a user can run: one of the guild's own (the default guild's unless
        `guild_id` names another), else a global one."""
        scopes = ([guild_id or self.guild.id] if guild else []) + [None]
        for scope in scopes:
            for command in self.commands.get(scope, []):
                if command["name"] == name and int(command.get("type", 1)) == command_type:
                    return command
        synced = {scope: [c["name"] for c in commands] for scope, commands in self.commands.items()}
        raise LookupError(f"command {name!r} (type {command_type}) was never synced; synced: {synced}")

    def _option_value(
        self,
        key: str,
        value: Any,
        schema: list[JsonDict],
        resolved: JsonDict,
        channel: FakeChannel,
    ) -> JsonDict:
        spec = next((o for o in schema if o["name"] == key), None)
        if spec is None:
            known = [o["name"] for o in schema]
            raise LookupError(f"option {key!r} is not in the synced command (it has {known})")
        kind = int(spec["type"])
        if kind == OptionType.ATTACHMENT:
            if isinstance(value, dict):
                attachment = value
            else:
                attachment = self.host_file(channel.id, *value, ephemeral=True)
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            value = attachment["id"]
        elif kind in (OptionType.USER, OptionType.MENTIONABLE):
            user = self.user(value)
            resolved.setdefault("users", {})[str(user.id)] = user.payload()
            guild = self.guild_of(channel)
            member = guild.members.get(user.id)
            if member is not None and channel.guild_id is not None:
                permissions = guild.permissions_in(member, channel)
                member_data = member.payload(with_user=False, permissions=permissions)
                resolved.setdefault("members", {})[str(user.id)] = member_data
            value = str(user.id)
        elif kind == OptionType.CHANNEL:
            target = self.channel(value)
            channel_data = {**target.payload(), "permissions": str(self.bot_permissions(target))}
            resolved.setdefault("channels", {})[str(target.id)] = channel_data
            value = str(target.id)
        elif kind == OptionType.ROLE:
            role = value if isinstance(value, FakeRole) else self.role(value)
            resolved.setdefault("roles", {})[str(role.id)] = role.payload()
            value = str(role.id)
        return {"name": key, "type": kind, "value": value}

    async def _interact(
        self,
        interaction_type: int,
        data: JsonDict,
        user_ref: UserRef,
        channel: FakeChannel,
        *,
        message: JsonDict | None = None,
        locale: str = "en-US",
        deliveries: int = 1,
    ) -> JsonDict:
        interaction_id = self.snowflakes.next()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        user = self.user(user_ref)
        in_guild = channel.guild_id is not None
        guild = self.guild_of(channel)
        payload: JsonDict = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": interaction_type,
            "data": data,
            "channel_id": str(channel.id),
            "token": token,
            "version": 1,
            "locale": locale,
            "app_permissions": str(self.bot_permissions(channel if in_guild else None)),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id) if in_guild else "0"},
            "context": 0 if in_guild else 1,
            "attachment_size_limit": DEFAULT_ATTACHMENT_SIZE_LIMIT,
        }
        if in_guild:
            member = self.member(user, guild)
            permissions = guild.permissions_in(member, channel)
            payload["guild_id"] = str(guild.id)
            payload["guild"] = {"id": str(guild.id), "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["member"] = member.payload(permissions=permissions)
            payload["channel"] = {**channel.payload(), "permissions": str(permissions)}
        else:
            payload["user"] = user.payload()
            payload["channel"] = channel.payload()
        if message is not None:
            payload["message"] = message
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=interaction_type,
            payload=payload,
            channel=channel,
            user=user,
            created=time.monotonic(),
            source_message=message,
        )
        self.interactions[interaction_id] = record
        self.interactions_by_token[token] = record
        for _ in range(deliveries):
            await self.dispatch("INTERACTION_CREATE", payload)
        return payload


def _subcommand_types(depth: int) -> list[int]:
    return [int(OptionType.SUB_COMMAND_GROUP), int(OptionType.SUB_COMMAND)][-depth:] if depth else []


def _has_component(components: list[JsonDict], custom_id: str) -> bool:
    for component in components:
        if component.get("custom_id") == custom_id:
            return True
        if _has_component(component.get("components", []), custom_id):
            return True
    return False
