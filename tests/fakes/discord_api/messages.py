"""Messages and hosted files of the fake Discord (mixed into `FakeDiscord`).

Messages are kept as the JSON dicts Discord would send and are changed in place, so a dict a test holds
always shows the message's current state. Every change is also dispatched on the gateway, like Discord does.
"""

from __future__ import annotations

import secrets
import time

import yarl

from tests.fakes.discord_api.entities import ChannelRef, FakeChannel, FakeMember, FakeUser
from tests.fakes.discord_api.payloads import (
    HostedFile,
    attachment_payload,
    guess_content_type,
    mentioned_ids,
    message_payload,
)
from tests.fakes.discord_api.protocol import InteractionType, JsonDict, MessageFlag, now_iso
from tests.fakes.discord_api.recording import ApiError
from tests.fakes.discord_api.world import DiscordWorld, InteractionRecord


class MessageStore(DiscordWorld):
    """Messages and hosted files; every change is also dispatched on the gateway, as Discord does."""

    def host_file(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> JsonDict:
        """Serve `data` from the fake CDN and return its attachment payload."""
        attachment_id = self.snowflakes.next()
        content_type = content_type or guess_content_type(filename)
        path = f"/attachments/{channel_id}/{attachment_id}/{filename}"
        self.hosted_files[path] = HostedFile(path, data, content_type)
        # Real CDN links are signed and expire; the query keeps clients honest about not dropping it.
        expiry = f"?ex={int(time.time()) + 86400:x}&is={int(time.time()):x}&hm={secrets.token_hex(32)}&"
        return attachment_payload(
            attachment_id,
            filename,
            data,
            content_type,
            url=f"{self.base_url}{path}{expiry}",
            proxy_url=f"{self.base_url}/media{path}{expiry}",
            description=description,
            ephemeral=ephemeral,
        )

    def expire_file(self, url: str) -> None:
        """Make a hosted attachment answer 404, like an expired CDN link."""
        self.hosted_files.pop(str(yarl.URL(url).path).removeprefix("/media"), None)

    def messages_in(self, channel: ChannelRef) -> list[JsonDict]:
        return list(self.messages.get(self.channel(channel).id, []))

    def message_by_id(self, message_id: int) -> JsonDict:
        if message_id not in self.messages_by_id:
            raise ApiError(404, 10008, "Unknown Message")
        return self.messages_by_id[message_id]

    async def create_message(
        self,
        channel: FakeChannel,
        author: FakeMember | FakeUser,
        *,
        content: str = "",
        attachments: list[JsonDict] | None = None,
        embeds: list[JsonDict] | None = None,
        components: list[JsonDict] | None = None,
        flags: int = 0,
        message_type: int = 0,
        extra: JsonDict | None = None,
    ) -> JsonDict:
        member = author if isinstance(author, FakeMember) else None
        user = author.user if isinstance(author, FakeMember) else author
        mentions = [self.users[int(i)] for i in mentioned_ids(content) if int(i) in self.users]
        message = message_payload(
            message_id=self.snowflakes.next(),
            channel=channel,
            author=user,
            member=member if channel.guild_id is not None else None,
            content=content or "",
            attachments=attachments,
            embeds=embeds,
            components=components,
            flags=int(flags or 0),
            message_type=message_type,
            mentions=mentions,
            extra=extra,
        )
        self.messages.setdefault(channel.id, []).append(message)
        self.messages_by_id[int(message["id"])] = message
        self.created_messages.append(message)
        if not int(message["flags"]) & MessageFlag.EPHEMERAL:
            await self.dispatch("MESSAGE_CREATE", message)
        return message

    async def edit_message(self, message: JsonDict, changes: JsonDict) -> JsonDict:
        """Apply changes in place, so every holder of the message dict sees its current state."""
        if "content" in changes:
            changes["content"] = changes["content"] or ""
            mentioned = mentioned_ids(changes["content"])
            message["mentions"] = [self.users[int(i)].payload() for i in mentioned if int(i) in self.users]
        for key, value in changes.items():
            if value is not None:
                message[key] = value
            elif key in ("embeds", "components", "attachments"):
                message[key] = []
        message["edited_timestamp"] = now_iso()
        self.created_messages.notify()
        if not int(message["flags"]) & MessageFlag.EPHEMERAL:
            await self.dispatch("MESSAGE_UPDATE", message)
        return message

    async def delete_message(self, message: JsonDict) -> None:
        message_id = int(message["id"])
        self.messages_by_id.pop(message_id, None)
        channel_messages = self.messages.get(int(message["channel_id"]), [])
        channel_messages[:] = [m for m in channel_messages if m["id"] != message["id"]]
        self.deleted_messages.append(message)
        self.created_messages.notify()
        data = {"id": message["id"], "channel_id": message["channel_id"]}
        if "guild_id" in message:
            data["guild_id"] = message["guild_id"]
        await self.dispatch("MESSAGE_DELETE", data)

    async def add_reaction(self, message: JsonDict, emoji: str, user: FakeUser) -> None:
        name, _, emoji_id = emoji.partition(":")
        for reaction in message["reactions"]:
            if reaction["emoji"]["name"] == name:
                reaction["count"] += 1
                reaction["users"].append(str(user.id))
                break
        else:
            message["reactions"].append(
                {"emoji": {"id": emoji_id or None, "name": name}, "count": 1, "users": [str(user.id)]}
            )
        await self.dispatch("MESSAGE_REACTION_ADD", self._reaction_event(message, name, emoji_id, user))

    async def remove_reaction(self, message: JsonDict, emoji: str, user: FakeUser) -> None:
        name, _, emoji_id = emoji.partition(":")
        for reaction in message["reactions"]:
            if reaction["emoji"]["name"] == name and str(user.id) in reaction["users"]:
                reaction["users"].remove(str(user.id))
                reaction["count"] -= 1
        message["reactions"] = [r for r in message["reactions"] if r["count"] > 0]
        await self.dispatch("MESSAGE_REACTION_REMOVE", self._reaction_event(message, name, emoji_id, user))

    def _reaction_event(self, message: JsonDict, name: str, emoji_id: str, user: FakeUser) -> JsonDict:
        data: JsonDict = {
            "user_id": str(user.id),
            "channel_id": message["channel_id"],
            "message_id": message["id"],
            "emoji": {"id": emoji_id or None, "name": name},
            "burst": False,
            "type": 0,
        }
        if "guild_id" in message:
            data["guild_id"] = message["guild_id"]
        return data

    async def create_interaction_message(
        self, interaction: InteractionRecord, fields: JsonDict, *, followup: bool = False
    ) -> JsonDict:
        message_type = 23 if interaction.payload["data"].get("type") == 3 else 20
        if interaction.type == InteractionType.MESSAGE_COMPONENT:
            message_type = 19 if followup else 0
        user = interaction.user
        extra = {
            "webhook_id": str(self.application_id),
            "application_id": str(self.application_id),
            "interaction_metadata": {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": user.payload(),
                "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
            },
        }
        message = await self.create_message(
            interaction.channel, self.bot_user, message_type=message_type, extra=extra, **fields
        )
        if not followup:
            interaction.original_message_id = int(message["id"])
        if not int(message["flags"]) & MessageFlag.LOADING:
            interaction.replies.append(message)
        return message
