"""REST routes of the fake Discord for channels, messages and reactions, with the permission checks
Discord makes for the bot and the parsing of message bodies (JSON or multipart with uploads) that the
interaction routes share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.fakes.discord_api.entities import FakeChannel
from tests.fakes.discord_api.protocol import ChannelType, JsonDict, Perm
from tests.fakes.discord_api.recording import ApiError, RecordedRequest

if TYPE_CHECKING:
    from tests.fakes.discord_api.server import FakeDiscord

# What a handler returns for an empty 204 answer.
NO_CONTENT = object()


class ChannelRoutes:
    server: FakeDiscord

    def _channel(self, params: dict[str, str]) -> FakeChannel:
        return self.server.channel_by_id(int(params["channel"]))

    def _message(self, params: dict[str, str]) -> JsonDict:
        message = self.server.message_by_id(int(params["message"]))
        if message["channel_id"] != params["channel"]:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    def _require(self, permission: Perm, channel: FakeChannel | None) -> None:
        if channel is not None and channel.type == ChannelType.DM:
            return
        if not self.server.bot_permissions(channel) & permission:
            raise ApiError(403, 50013, "Missing Permissions")

    async def get_channel(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return self._channel(params).payload()

    async def list_messages(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        self._require(Perm.READ_MESSAGE_HISTORY, channel)
        limit = int(record.query.get("limit", "50"))
        newest_first = sorted(self.server.messages.get(channel.id, []), key=lambda m: -int(m["id"]))
        if "before" in record.query:
            newest_first = [m for m in newest_first if int(m["id"]) < int(record.query["before"])]
        if "after" in record.query:
            newest_first = [m for m in newest_first if int(m["id"]) > int(record.query["after"])]
        return newest_first[:limit]

    def message_fields(
        self,
        record: RecordedRequest,
        channel: FakeChannel,
        existing: list[JsonDict] | None = None,
        *,
        body: JsonDict | None = None,
    ) -> JsonDict:
        """Content, embeds, components, flags and attachments of a create or edit body (JSON or multipart).

        `body` defaults to the request's JSON; interaction callbacks pass their `data` object.
        """
        body = (record.json or {}) if body is None else body
        fields = {key: body[key] for key in ("content", "embeds", "components", "flags") if key in body}
        if "attachments" in body or record.files:
            kept = {a["id"]: a for a in existing or []}
            attachments = []
            for item in body.get("attachments", []):
                if str(item.get("id")) in kept:
                    attachments.append(kept[str(item["id"])])
            # discord.py names uploads files[N] and refers to them as attachment id N.
            described = {str(item.get("id")): item for item in body.get("attachments", [])}
            for index, upload in enumerate(record.files):
                description = described.get(str(index), {}).get("description")
                attachments.append(
                    self.server.host_file(
                        channel.id, upload.filename, upload.data, upload.content_type, description=description
                    )
                )
            fields["attachments"] = attachments
        return fields

    async def create_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        self._require(Perm.SEND_MESSAGES, channel)
        if record.files:
            self._require(Perm.ATTACH_FILES, channel)
        body = record.json or {}
        fields = self.message_fields(record, channel)
        if not any(fields.get(key) for key in ("content", "embeds", "attachments", "components")):
            raise ApiError(400, 50006, "Cannot send an empty message")
        extra: JsonDict = {}
        reference = body.get("message_reference")
        if reference:
            reference = {key: str(value) for key, value in reference.items() if value is not None}
            extra["message_reference"] = {"channel_id": str(channel.id), **reference, "type": 0}
            referenced = self.server.messages_by_id.get(int(reference.get("message_id", 0)))
            extra["referenced_message"] = referenced
            message_type = 19
        else:
            message_type = 0
        return await self.server.create_message(
            channel, self.server.bot_member_or_user(channel), message_type=message_type, extra=extra, **fields
        )

    async def get_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        self._channel(params)
        return self._message(params)

    async def edit_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        message = self._message(params)
        changes = self.message_fields(record, channel, message["attachments"])
        if message["author"]["id"] != str(self.server.bot_user.id) and set(changes) - {"flags"}:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        return await self.server.edit_message(message, changes)

    async def delete_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        message = self._message(params)
        if message["author"]["id"] != str(self.server.bot_user.id):
            self._require(Perm.MANAGE_MESSAGES, channel)
        await self.server.delete_message(message)
        return NO_CONTENT

    async def bulk_delete(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        self._require(Perm.MANAGE_MESSAGES, channel)
        for message_id in (record.json or {}).get("messages", []):
            message = self.server.messages_by_id.get(int(message_id))
            if message is not None:
                await self.server.delete_message(message)
        return NO_CONTENT

    async def react(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        channel = self._channel(params)
        self._require(Perm.ADD_REACTIONS, channel)
        await self.server.add_reaction(self._message(params), params["emoji"], self.server.bot_user)
        return NO_CONTENT

    async def unreact(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        self._channel(params)
        await self.server.remove_reaction(self._message(params), params["emoji"], self.server.bot_user)
        return NO_CONTENT

    async def no_content(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return NO_CONTENT
