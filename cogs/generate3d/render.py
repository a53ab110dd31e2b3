"""Embeds of the 3D feature, built from the service's snapshots only (a finished job's last one has its
files)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import discord

from bot.services.generate3d import (
    STAGE_LABELS,
    GenerationJob,
    JobFiles,
    JobSnapshot,
    JobState,
    ModeratorAlert,
    files_expired_after_days,
    format_elapsed,
    progress_text,
)

THUMBNAIL_NAME = "preview.png"
_STATE_MARKS = {
    JobState.DONE: "✅",
    JobState.FAILED: "❌",
    JobState.CANCELED: "⏹️",
}
_COLOURS = {
    JobState.DONE: discord.Colour.green(),
    JobState.FAILED: discord.Colour.red(),
    JobState.CANCELED: discord.Colour.light_grey(),
}
_FORMAT_ORDER = ("glb", "fbx", "zip", "obj", "mtl", "usdz", "stl", "3mf")
_FORMAT_LABELS = {"zip": "OBJ + textures (.zip)"}

Signer = Callable[[str], str]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _prompt_lines(snapshot: JobSnapshot) -> str:
    lines = [f"**Prompt:** {_clip(snapshot.prompt, 600)}"]
    if snapshot.enhanced_prompt and snapshot.enhanced_prompt != snapshot.prompt:
        source = f" ({snapshot.enhancer})" if snapshot.enhancer and snapshot.enhancer != "none" else ""
        lines.append(f"**Enhanced prompt{source}:** {_clip(snapshot.enhanced_prompt, 1200)}")
    return "\n".join(lines)


def progress_embed(snapshot: JobSnapshot, *, viewer_url: str) -> discord.Embed:
    embed = discord.Embed(
        title=f"Generating a 3D model · {STAGE_LABELS[snapshot.state]}",
        description=f"{_prompt_lines(snapshot)}\n\n{progress_text(snapshot)}",
        colour=discord.Colour.blurple(),
    )
    embed.add_field(name="Live progress", value=f"[Open the viewer]({viewer_url})", inline=False)
    embed.set_footer(text=f"Job {snapshot.job_id}")
    return embed


def _format_label(name: str) -> str:
    return _FORMAT_LABELS.get(name, name.upper())


def result_embed(
    snapshot: JobSnapshot, files: JobFiles, *, sign: Signer, viewer_url: str, has_thumbnail: bool
) -> discord.Embed:
    """A finished job: download links for its files (signed now, since links expire), prompts, viewer."""
    models = sorted(
        files.models,
        key=lambda a: _FORMAT_ORDER.index(a.name) if a.name in _FORMAT_ORDER else len(_FORMAT_ORDER),
    )
    downloads = " · ".join(f"[{_format_label(asset.name)}]({sign(asset.key)})" for asset in models)
    textures = " · ".join(f"[{asset.name.replace('_', ' ')}]({sign(asset.key)})" for asset in files.textures)
    # Links go in the description (4096 characters); the prompts in fields, so long prompts cannot push
    # a link past the limit and cut it in half.
    parts = [f"**Downloads:** {downloads or 'none'}"]
    if textures:
        parts.append(f"**Textures:** {textures}")
    parts.append(f"**Viewer:** [rotate and zoom in your browser]({viewer_url})")
    embed = discord.Embed(
        title="Your 3D model is ready",
        description="\n".join(parts)[:4096],
        colour=_COLOURS[JobState.DONE],
    )
    embed.add_field(name="Prompt", value=_clip(snapshot.prompt, 1024), inline=False)
    if snapshot.enhanced_prompt and snapshot.enhanced_prompt != snapshot.prompt:
        source = f" ({snapshot.enhancer})" if snapshot.enhancer and snapshot.enhancer != "none" else ""
        embed.add_field(
            name=f"Enhanced prompt{source}", value=_clip(snapshot.enhanced_prompt, 1024), inline=False
        )
    if has_thumbnail:
        embed.set_image(url=f"attachment://{THUMBNAIL_NAME}")
    kind = "textured" if snapshot.textured else "untextured shape"
    embed.set_footer(
        text=f"Job {snapshot.job_id} · {kind} · took {format_elapsed(snapshot.elapsed_s())} · "
        "links expire; /3d history has fresh ones"
    )
    return embed


def ended_embed(snapshot: JobSnapshot) -> discord.Embed:
    """A failed or canceled job: what was asked and why it ended."""
    title = "3D generation failed" if snapshot.state is JobState.FAILED else "3D generation canceled"
    reason = snapshot.error or ("Stopped on request." if snapshot.state is JobState.CANCELED else "")
    embed = discord.Embed(
        title=title,
        description=f"{_prompt_lines(snapshot)}\n\n{reason}".strip(),
        colour=_COLOURS.get(snapshot.state, discord.Colour.red()),
    )
    embed.set_footer(text=f"Job {snapshot.job_id}")
    return embed


def history_embed(jobs: Sequence[GenerationJob], *, viewer_url: Callable[[str], str]) -> discord.Embed:
    embed = discord.Embed(title="Your recent 3D models", colour=discord.Colour.blurple())
    if not jobs:
        embed.description = "Nothing yet: try `/3d create prompt:a small wooden treasure chest`."
        return embed
    lines = []
    for job in jobs:
        mark = _STATE_MARKS.get(job.state, "⏳")
        when = f"<t:{int(job.created_at.timestamp())}:R>"
        expired_after = files_expired_after_days(job)
        if job.state is not JobState.DONE:
            state = job.state.value
        elif expired_after is not None:
            state = f"files expired after {expired_after} days"
        else:
            state = f"[view and download]({viewer_url(job.id)})"
        lines.append(f"{mark} {when} · {_clip(job.prompt, 60)} · {state} · `{job.id}`")
    embed.description = _clip("\n".join(lines), 4096)
    return embed


def alert_embed(alert: ModeratorAlert) -> discord.Embed:
    embed = discord.Embed(title="Blocked 3D prompt", colour=discord.Colour.orange())
    embed.add_field(name="User", value=f"<@{alert.user_id}> (`{alert.user_id}`)")
    if alert.channel_id is not None:
        embed.add_field(name="Channel", value=f"<#{alert.channel_id}>")
    embed.add_field(name="Reason", value=_clip(alert.reason, 1024), inline=False)
    # Spoilered: the prompt is what was found offensive.
    embed.add_field(name="Prompt", value=f"||{_clip(alert.prompt, 1000)}||", inline=False)
    return embed
