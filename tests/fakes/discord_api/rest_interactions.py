"""REST routes of the fake Discord for interactions: the initial callback (reply, defer, update) within
the acknowledgement deadline, and the webhook follow-ups that create, edit and delete the responses.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tests.fakes.discord_api.protocol import JsonDict, MessageFlag
from tests.fakes.discord_api.recording import ApiError, RecordedRequest
from tests.fakes.discord_api.rest_channels import NO_CONTENT, ChannelRoutes

if TYPE_CHECKING:
    from tests.fakes.discord_api.world import InteractionRecord

# Interaction callback types (Discord API "Interaction Callback Type").
PONG = 1
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7


def _add_reply(interaction: InteractionRecord, message: JsonDict) -> None:
    if all(reply["id"] != message["id"] for reply in interaction.replies):
        interaction.replies.append(message)


class InteractionRoutes(ChannelRoutes):
    async def interaction_callback(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        interaction = self.server.interactions.get(int(params["interaction"]))
        if interaction is None or interaction.token != params["token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        if time.monotonic() - interaction.created > self.server.interaction_deadline_s:
            # Discord forgets an interaction that was not acknowledged within three seconds.
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.response_type is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        body = record.json or {}
        callback_type = int(body.get("type", 0))
        data = body.get("data") or {}
        interaction.response_type = callback_type
        message: JsonDict | None = None
        flags = int(data.get("flags") or 0)
        if callback_type == CHANNEL_MESSAGE:
            fields = self.message_fields(record, interaction.channel, body=data)
            message = await self.server.create_interaction_message(interaction, fields)
        elif callback_type == DEFERRED_CHANNEL_MESSAGE:
            loading = {"content": "", "flags": (flags & MessageFlag.EPHEMERAL) | MessageFlag.LOADING}
            message = await self.server.create_interaction_message(interaction, loading)
        elif callback_type in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE) and interaction.source_message:
            interaction.original_message_id = int(interaction.source_message["id"])
            message = self.server.messages_by_id.get(interaction.original_message_id)
            if callback_type == UPDATE_MESSAGE and message is not None:
                existing = message["attachments"]
                changes = self.message_fields(record, interaction.channel, existing, body=data)
                message = await self.server.edit_message(message, changes)
                _add_reply(interaction, message)
        interaction.callbacks.append(record)
        if record.query.get("with_response") not in ("1", "true", "True"):
            return NO_CONTENT
        response: JsonDict = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "response_message_loading": callback_type == DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(
                    message is not None and int(message.get("flags", 0)) & MessageFlag.EPHEMERAL
                ),
            }
        }
        if message is not None:
            response["interaction"]["response_message_id"] = message["id"]
            response["resource"] = {"type": callback_type, "message": message}
        else:
            response["resource"] = {"type": callback_type}
        return response

    def _interaction_for_token(self, params: dict[str, str]) -> InteractionRecord:
        if int(params["app"]) != self.server.application_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        interaction = self.server.interactions_by_token.get(params["token"])
        if interaction is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        return interaction

    def _webhook_message(self, interaction: InteractionRecord, params: dict[str, str]) -> JsonDict:
        if params["message"] == "@original":
            if interaction.response_type is None:
                raise ApiError(404, 10015, "Unknown Webhook")
            message_id = interaction.original_message_id
        else:
            message_id = int(params["message"])
        message = self.server.messages_by_id.get(message_id or 0)
        if message is None:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    async def create_followup(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        interaction = self._interaction_for_token(params)
        if interaction.response_type is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        fields = self.message_fields(record, interaction.channel)
        original = self.server.messages_by_id.get(interaction.original_message_id or 0)
        if original is not None and int(original["flags"]) & MessageFlag.LOADING:
            # After a "thinking" defer, Discord turns the first follow-up into the original response; its
            # ephemerality was decided by the defer.
            fields["flags"] = int(original["flags"]) & ~MessageFlag.LOADING
            message = await self.server.edit_message(original, fields)
            _add_reply(interaction, message)
        else:
            message = await self.server.create_interaction_message(interaction, fields, followup=True)
        interaction.followups.append(record)
        return message

    async def edit_webhook(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        bot = self.server.bot_user
        return {"id": params["app"], "type": 3, "name": bot.username, "application_id": params["app"]}

    async def get_webhook_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        return self._webhook_message(self._interaction_for_token(params), params)

    async def edit_webhook_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        interaction = self._interaction_for_token(params)
        message = self._webhook_message(interaction, params)
        fields = self.message_fields(record, interaction.channel, message["attachments"])
        if int(message["flags"]) & MessageFlag.LOADING:
            fields["flags"] = int(message["flags"]) & ~MessageFlag.LOADING
        interaction.followups.append(record)
        edited = await self.server.edit_message(message, fields)
        _add_reply(interaction, edited)
        return edited

    async def delete_webhook_message(self, record: RecordedRequest, params: dict[str, str]) -> Any:
        interaction = self._interaction_for_token(params)
        await self.server.delete_message(self._webhook_message(interaction, params))
        return NO_CONTENT
