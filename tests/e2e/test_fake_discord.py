"""The fake Discord against a plain discord.py bot, proving the harness that Lumi's e2e tests rely on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord_api.payloads import tiny_png
from tests.fakes.discord_api.server import FakeDiscord, running_client

pytestmark = pytest.mark.e2e

PNG_1X1 = tiny_png()


class ConfirmView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=30)

    @discord.ui.button(label="OK", custom_id="probe:confirm:ok", style=discord.ButtonStyle.green)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmView]) -> None:
        await interaction.response.edit_message(content="confirmed", view=None)


class ProbeBot(commands.Bot):
    """A minimal bot exercising each protocol path the fake implements."""

    def __init__(self, guild_id: int, *, intents: discord.Intents | None = None) -> None:
        if intents is None:
            intents = discord.Intents.default()
            intents.message_content = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
        self.guild_id = guild_id
        self.seen: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.downloads: list[bytes] = []

    async def setup_hook(self) -> None:
        @app_commands.command(description="Answer pong")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("pong", ephemeral=True)

        @app_commands.command(description="Measure an uploaded file after thinking about it")
        async def measure(interaction: discord.Interaction, file: discord.Attachment, note: str = "") -> None:
            await interaction.response.defer(thinking=True)
            data = await file.read()
            size = f"{file.width}x{file.height}"
            await interaction.followup.send(f"{file.filename}: {len(data)} bytes {size} {note}")

        @app_commands.command(description="Show a button")
        async def confirm(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("confirm?", view=ConfirmView())

        @app_commands.context_menu(name="Count words")
        async def count_words(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.send_message(f"{len(message.content.split())} words", ephemeral=True)

        @app_commands.command(description="Time a member out for five minutes")
        async def mute(interaction: discord.Interaction, member: discord.Member) -> None:
            try:
                await member.timeout(timedelta(minutes=5), reason="probe")
            except discord.Forbidden as error:
                await interaction.response.send_message(f"forbidden {error.code}", ephemeral=True)
            else:
                await interaction.response.send_message(f"muted {member.name}", ephemeral=True)

        group = app_commands.Group(name="probe", description="Grouped commands")

        @group.command(name="echo", description="Echo text")
        async def echo(interaction: discord.Interaction, text: str, times: int = 1) -> None:
            await interaction.response.send_message(" ".join([text] * times))

        self.tree.add_command(ping)
        self.tree.add_command(measure)
        self.tree.add_command(confirm)
        self.tree.add_command(count_words)
        self.tree.add_command(mute)
        self.tree.add_command(group)
        guild = discord.Object(self.guild_id)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)

    async def on_message(self, message: discord.Message) -> None:
        if message.author == self.user:
            return
        await self.seen.put(message)
        if message.attachments:
            data = await message.attachments[0].read()
            self.downloads.append(data)
            reply = await message.reply(f"read {len(data)} bytes", mention_author=False)
            await reply.edit(content=f"read {len(data)} bytes (edited)")
        if message.content == "!cleanup":
            note = await message.channel.send("temporary", file=discord.File(__file__, "probe.py"))
            await note.delete()


@pytest.fixture
async def probe(fake_discord: FakeDiscord) -> AsyncIterator[ProbeBot]:
    bot = ProbeBot(fake_discord.guild.id)
    async with running_client(bot, fake_discord):
        yield bot


async def test_login_and_guild_sync(fake_discord: FakeDiscord, probe: ProbeBot) -> None:
    assert probe.user is not None and probe.user.id == fake_discord.bot_user.id
    assert probe.application_id == fake_discord.application_id
    guild = probe.get_guild(fake_discord.guild.id)
    assert guild is not None
    assert {c.name for c in guild.text_channels} >= {"general", "photos", "mod-log", "nsfw"}
    nsfw = discord.utils.get(guild.text_channels, name="nsfw")
    assert nsfw is not None and nsfw.is_nsfw()
    assert guild.me.guild_permissions.manage_messages and guild.me.guild_permissions.moderate_members
    moderator = discord.utils.get(guild.roles, name="Moderator")
    assert moderator is not None and moderator.permissions.moderate_members
    # Without the privileged members intent only the bot's own member arrives, as on Discord.
    assert [member.id for member in guild.members] == [fake_discord.bot_user.id]
    assert fake_discord.requests[0].path == "/users/@me"
    sync = await fake_discord.wait_for_request("PUT", rf"/applications/\d+/guilds/{guild.id}/commands")
    names = {command["name"] for command in sync.json}
    assert names == {"ping", "measure", "confirm", "mute", "Count words", "probe"}
    identify = next(p for p in fake_discord.gateway.received if p["op"] == 2)
    assert identify["d"]["intents"] & (1 << 15)  # MESSAGE_CONTENT
    assert probe.latency < 5


async def test_message_with_attachment_is_read_from_the_fake_cdn(
    fake_discord: FakeDiscord, probe: ProbeBot
) -> None:
    posted = await fake_discord.post_message("photos", "alice", "look", attachments=[("dot.png", PNG_1X1)])
    attachment = posted["attachments"][0]
    assert (attachment["width"], attachment["height"]) == (1, 1)

    seen = await asyncio.wait_for(probe.seen.get(), 5)
    assert seen.content == "look" and seen.author.id == fake_discord.member("alice").id
    reply = await fake_discord.wait_for_message("photos", predicate=lambda m: "edited" in m["content"])
    assert reply["content"] == f"read {len(PNG_1X1)} bytes (edited)"
    assert probe.downloads == [PNG_1X1]
    assert reply["message_reference"]["message_id"] == posted["id"]
    edit = await fake_discord.wait_for_request("PATCH", r"/channels/\d+/messages/\d+")
    assert edit.json["content"].endswith("(edited)")
    assert [r.path.split("/")[-1] for r in fake_discord.rest.cdn_requests] == ["dot.png"]


async def test_upload_then_delete_is_recorded(fake_discord: FakeDiscord, probe: ProbeBot) -> None:
    await fake_discord.post_message("general", "alice", "!cleanup")
    upload = await fake_discord.wait_for_request("POST", r"/channels/\d+/messages")
    assert upload.json["content"] == "temporary"
    assert upload.files[0].filename == "probe.py" and b"ProbeBot" in upload.files[0].data
    message_id = upload.response["id"]
    await fake_discord.wait_for_request("DELETE", rf"/channels/\d+/messages/{message_id}")
    assert fake_discord.deleted_messages[-1]["id"] == message_id
    assert all(m["id"] != message_id for m in fake_discord.messages_in("general"))


async def test_slash_command_answers_with_callback(fake_discord: FakeDiscord, probe: ProbeBot) -> None:
    interaction = await fake_discord.slash_command("ping", user="alice", channel="general")
    callback = await fake_discord.wait_for_callback(interaction)
    assert callback.json == {"type": 4, "data": {"tts": False, "content": "pong", "flags": 64}}
    reply = await fake_discord.wait_for_reply(interaction)
    assert reply["content"] == "pong" and reply["interaction_metadata"]["id"] == interaction["id"]


async def test_subcommand_options_are_typed_from_the_synced_schema(
    fake_discord: FakeDiscord, probe: ProbeBot
) -> None:
    interaction = await fake_discord.slash_command(
        "probe", subcommand="echo", options={"text": "hi", "times": 3}, user="mod"
    )
    reply = await fake_discord.wait_for_reply(interaction)
    assert reply["content"] == "hi hi hi"


async def test_attachment_option_defer_and_followup(fake_discord: FakeDiscord, probe: ProbeBot) -> None:
    interaction = await fake_discord.slash_command(
        "measure", options={"file": ("dot.png", PNG_1X1, "image/png"), "note": "ok"}
    )
    callback = await fake_discord.wait_for_callback(interaction)
    assert callback.json["type"] == 5
    reply = await fake_discord.wait_for_reply(interaction)
    assert reply["content"] == f"dot.png: {len(PNG_1X1)} bytes 1x1 ok"
    # After a "thinking" defer the first follow-up becomes the original response.
    assert reply["id"] == str(fake_discord.interactions[int(interaction["id"])].original_message_id)


async def test_button_click_updates_the_message(fake_discord: FakeDiscord, probe: ProbeBot) -> None:
    interaction = await fake_discord.slash_command("confirm")
    prompt = await fake_discord.wait_for_reply(interaction)
    assert prompt["components"][0]["components"][0]["custom_id"] == "probe:confirm:ok"

    click = await fake_discord.click_button(prompt, "probe:confirm:ok", user="alice")
    callback = await fake_discord.wait_for_callback(click)
    assert callback.json["type"] == 7
    assert callback.json["data"]["content"] == "confirmed" and callback.json["data"]["components"] == []
    assert fake_discord.messages_by_id[int(prompt["id"])]["content"] == "confirmed"


async def test_message_context_menu(fake_discord: FakeDiscord, probe: ProbeBot) -> None:
    target = await fake_discord.post_message("general", "alice", "one two three")
    interaction = await fake_discord.message_context_command("Count words", target, user="mod")
    reply = await fake_discord.wait_for_reply(interaction)
    assert reply["content"] == "3 words"


async def test_rate_limit_is_retried(fake_discord: FakeDiscord, probe: ProbeBot) -> None:
    fake_discord.fail_next("POST", r"/channels/\d+/messages", 429, retry_after=0.05)
    await fake_discord.post_message("general", "alice", "!cleanup")
    first = await fake_discord.wait_for_request("POST", r"/channels/\d+/messages")
    second = await fake_discord.wait_for_request("POST", r"/channels/\d+/messages", since=first.index + 1)
    assert (first.status, second.status) == (429, 200)


async def test_late_answer_is_unknown_interaction(fake_discord: FakeDiscord) -> None:
    fake_discord.interaction_deadline_s = 0.2
    outcomes: asyncio.Queue[str] = asyncio.Queue()
    bot = ProbeBot(fake_discord.guild.id)

    @bot.tree.command(description="Too slow")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.4)
        try:
            await interaction.response.send_message("late")
        except discord.NotFound as error:
            await outcomes.put(f"late: {error.code}")

    async with running_client(bot, fake_discord):
        await fake_discord.slash_command("slow")
        assert await asyncio.wait_for(outcomes.get(), 5) == "late: 10062"


async def test_second_callback_is_rejected(fake_discord: FakeDiscord, probe: ProbeBot) -> None:
    interaction = await fake_discord.slash_command("ping")
    await fake_discord.wait_for_callback(interaction)
    url = f"{fake_discord.api_base}/interactions/{interaction['id']}/{interaction['token']}/callback"
    async with aiohttp.ClientSession() as session, session.post(url, json={"type": 4}) as response:
        assert response.status == 400
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["code"] == 40060


async def test_without_message_content_intent_content_arrives_empty(fake_discord: FakeDiscord) -> None:
    bot = ProbeBot(fake_discord.guild.id, intents=discord.Intents.default())
    async with running_client(bot, fake_discord):
        await fake_discord.post_message("general", "alice", "secret", attachments=[("a.txt", b"x")])
        message = await asyncio.wait_for(bot.seen.get(), 5)
        assert (message.content, message.attachments) == ("", [])
        await fake_discord.post_message("general", "alice", f"hey <@{fake_discord.bot_user.id}>")
        mentioned = await asyncio.wait_for(bot.seen.get(), 5)
        assert mentioned.content.startswith("hey")


async def test_reconnect_resumes_the_session(fake_discord: FakeDiscord, probe: ProbeBot) -> None:
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        resumed.set()

    probe.add_listener(on_resumed)
    await fake_discord.reconnect_clients()
    await asyncio.wait_for(resumed.wait(), 5)
    await fake_discord.post_message("general", "alice", "still here")
    message = await asyncio.wait_for(probe.seen.get(), 5)
    assert message.content == "still here"


async def test_member_timeout_and_missing_permissions(fake_discord: FakeDiscord, probe: ProbeBot) -> None:
    alice = fake_discord.member("alice")
    interaction = await fake_discord.slash_command("mute", options={"member": "alice"}, user="mod")
    assert (await fake_discord.wait_for_reply(interaction))["content"] == "muted alice"
    patch = await fake_discord.wait_for_request("PATCH", rf"/guilds/\d+/members/{alice.id}")
    assert patch.json["communication_disabled_until"] is not None
    assert alice.communication_disabled_until == patch.json["communication_disabled_until"]
    assert patch.headers["X-Audit-Log-Reason"] == "probe"

    # The guild owner outranks the bot, so Discord refuses.
    interaction = await fake_discord.slash_command("mute", options={"member": "owner"}, user="mod")
    assert (await fake_discord.wait_for_reply(interaction))["content"] == "forbidden 50013"


async def test_direct_messages(fake_discord: FakeDiscord, probe: ProbeBot) -> None:
    dm = fake_discord.dm_channel("alice")
    await fake_discord.post_message(dm, "alice", "hello in private", attachments=[("dot.png", PNG_1X1)])
    message = await asyncio.wait_for(probe.seen.get(), 5)
    assert message.guild is None and message.content == "hello in private"
    reply = await fake_discord.wait_for_message(dm, predicate=lambda m: m["edited_timestamp"] is not None)
    assert reply["content"] == f"read {len(PNG_1X1)} bytes (edited)"
    assert "guild_id" not in reply
