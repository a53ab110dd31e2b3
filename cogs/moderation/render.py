"""Embeds and texts of the moderation feature, built from stored data only.

An alert is rendered from its case alone, so a decision made after a restart (or by the clean-up job)
redraws exactly what the first alert showed plus what changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import discord

from bot.services.moderation import (
    ANONYMOUS_USER_ID,
    CaseAction,
    CaseStatus,
    CategoryRule,
    CheckStatus,
    GuildModeration,
    ModerationCase,
    Policy,
    RegisteredClassifier,
    Verdict,
    allowed_choices,
    case_category,
    describe_policy,
)

_STATUS_COLOURS = {
    CaseStatus.OPEN: discord.Colour.orange(),
    CaseStatus.AUTO_ACTIONED: discord.Colour.red(),
    CaseStatus.CONFIRMED: discord.Colour.dark_red(),
    CaseStatus.RESTORED: discord.Colour.green(),
    CaseStatus.DISMISSED: discord.Colour.light_grey(),
}
_ACTION_WORDS = {
    CaseAction.NONE: "none",
    CaseAction.DELETED: "post deleted",
    CaseAction.HELD: "post held for review (removed)",
    CaseAction.ALERTED: "alert only (post still up)",
    CaseAction.TIMED_OUT: "author timed out",
}
_STATUS_WORDS = {
    CaseStatus.OPEN: "waiting for a moderator",
    CaseStatus.AUTO_ACTIONED: "acted on automatically",
    CaseStatus.CONFIRMED: "confirmed",
    CaseStatus.RESTORED: "restored",
    CaseStatus.DISMISSED: "dismissed",
}
_FIELD_LIMIT = 1024


def jump_url(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def author_text(user_id: int) -> str:
    if user_id == ANONYMOUS_USER_ID:
        return "(data deleted on request)"
    return f"<@{user_id}> (`{user_id}`)"


def scores_text(scores: dict[str, float], *, limit: int = 6) -> str:
    shown = sorted(scores.items(), key=lambda item: -item[1])[:limit]
    return " · ".join(f"{name} **{value:.2f}**" for name, value in shown) or "—"


def labels_text(labels: Sequence[dict[str, object]], *, limit: int = 6) -> str:
    parts = []
    for label in labels[:limit]:
        score = label.get("score")
        shown = f" {score:.2f}" if isinstance(score, float | int) else ""
        parts.append(f"`{label.get('label', '?')}`{shown}")
    return ", ".join(parts) or "—"


def _clip(text: str, limit: int = _FIELD_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def alert_embed(case: ModerationCase) -> discord.Embed:
    category = case_category(case)
    first, *history = case.reason.split("\n")
    title = f"Case #{case.case_number}" + (f" · {category}" if category else "")
    embed = discord.Embed(title=title, description=_clip(first, 4000), colour=_STATUS_COLOURS[case.status])
    embed.add_field(name="Author", value=author_text(case.author_id))
    where = f"<#{case.channel_id}>"
    if case.action is CaseAction.ALERTED and case.message_id is not None:
        where += f" · [jump to post]({jump_url(case.guild_id, case.channel_id, case.message_id)})"
    embed.add_field(name="Channel", value=where)
    embed.add_field(name="Status", value=_STATUS_WORDS[case.status])
    embed.add_field(name="Action", value=_ACTION_WORDS[case.action], inline=False)
    embed.add_field(name="Scores", value=_clip(scores_text(case.scores)), inline=False)
    embed.add_field(name="Detector labels", value=_clip(labels_text(case.labels)), inline=False)
    if history:
        embed.add_field(
            name="History", value=_clip("\n".join(f"• {line}" for line in history[-8:])), inline=False
        )
    if case.evidence_key is not None and case.evidence_expires_at is not None:
        evidence = f"private copy kept until {discord.utils.format_dt(case.evidence_expires_at, 'R')}"
    else:
        evidence = "no copy kept"
    embed.add_field(name="Evidence", value=evidence, inline=False)
    embed.set_footer(text=f"Lumi moderation · case id {case.id}")
    embed.timestamp = case.created_at
    return embed


def decision_summary(case: ModerationCase, problem: str | None) -> str:
    if problem is not None:
        return f"Case #{case.case_number}: that did not work: {problem}"
    last = case.reason.rsplit("\n", 1)[-1]
    remaining = ", ".join(sorted(choice.value for choice in allowed_choices(case)))
    suffix = f" Still possible: {remaining}." if remaining else ""
    return f"Case #{case.case_number}: {last}.{suffix}"


def status_embed(
    config: GuildModeration,
    *,
    mod_channel_problem: str | None,
    missing_permissions: Sequence[str],
    open_cases: int,
    problems: Sequence[tuple[datetime, str]],
    models: str,
) -> discord.Embed:
    healthy = config.enabled and not mod_channel_problem and not missing_permissions
    embed = discord.Embed(
        title="Image moderation",
        colour=discord.Colour.green() if healthy else discord.Colour.orange(),
        description="On" if config.enabled else "**Off** (`/moderation setup enabled:True` turns it on)",
    )
    channel = f"<#{config.mod_channel_id}>" if config.mod_channel_id else "not set"
    if mod_channel_problem:
        channel += f"\n⚠️ {mod_channel_problem}"
    embed.add_field(name="Moderation channel", value=_clip(channel), inline=False)
    if missing_permissions:
        embed.add_field(name="Lumi is missing", value=_clip(", ".join(missing_permissions)), inline=False)
    exempt = [f"<#{channel_id}>" for channel_id in sorted(config.exempt_channel_ids)]
    exempt += [f"<@&{role_id}>" for role_id in sorted(config.exempt_role_ids)]
    if config.policy.exempt_nsfw_channels:
        exempt.append("age-restricted channels")
    embed.add_field(name="Exempt", value=_clip(", ".join(exempt) or "nothing"), inline=False)
    embed.add_field(name="Policy", value=_clip("\n".join(describe_policy(config.policy))), inline=False)
    if config.policy_problem:
        embed.add_field(name="Stored policy ignored", value=_clip(config.policy_problem), inline=False)
    embed.add_field(name="Open cases", value=str(open_cases))
    embed.add_field(name="Models", value=_clip(models))
    if problems:
        lines = [f"{discord.utils.format_dt(at, 'R')} {text}" for at, text in problems[-5:]]
        embed.add_field(name="Recent problems", value=_clip("\n".join(lines)), inline=False)
    return embed


def cases_embed(cases: Sequence[ModerationCase]) -> discord.Embed:
    embed = discord.Embed(title="Moderation cases", colour=discord.Colour.blurple())
    if not cases:
        embed.description = "No cases."
        return embed
    lines = []
    for case in cases:
        # No scores: either a re-post matched by its hash, or an image Lumi could not check (no hash).
        category = case_category(case) or ("repeat" if case.image_phash else "not checked")
        when = discord.utils.format_dt(case.created_at, "R")
        lines.append(
            f"**#{case.case_number}** {when} · {category} · {_STATUS_WORDS[case.status]} · "
            f"{_ACTION_WORDS[case.action]} · {author_text(case.author_id)} in <#{case.channel_id}>"
        )
    embed.description = _clip("\n".join(lines), 4000)
    return embed


def classifiers_embed(entries: Sequence[RegisteredClassifier], policy: Policy) -> discord.Embed:
    """The custom classifiers scoring this server's images, with the thresholds that apply to each."""
    embed = discord.Embed(title="Custom classifiers", colour=discord.Colour.blurple())
    if not entries:
        embed.description = (
            "None active here. Train one with `lumi train classifier` and register it with "
            "`lumi models add-classifier PATH --category CATEGORY [--guild ID]`."
        )
        return embed
    lines = []
    for entry in entries:
        rule = policy.rules.get(entry.category) if entry.builtin_category else entry.rule()
        accuracy = entry.validation.get("accuracy")
        quality = f" · validation accuracy {accuracy:.2f}" if isinstance(accuracy, int | float) else ""
        scope = "all servers" if entry.guild_id is None else "this server"
        lines.append(
            f"**#{entry.id} {entry.category}** · {scope} · {entry.name} ({entry.backbone}, "
            f"{entry.input_size[0]}×{entry.input_size[1]}) · flags `{entry.positive_class}`{quality}\n"
            f"  {_rule_text(rule, policy)}"
        )
    embed.description = _clip("\n".join(lines), 4000)
    embed.set_footer(text="Built-in categories use this server's thresholds (/moderation setup).")
    return embed


def _rule_text(rule: CategoryRule | None, policy: Policy) -> str:
    if rule is None:
        return "no thresholds: scores are shown but never acted on"
    action = (rule.review_action or policy.review_action).value
    review = "review off" if rule.review is None else f"review ≥ {rule.review:.2f} ({action})"
    act = (
        "auto-action off"
        if rule.act is None
        else f"auto-action ≥ {rule.act:.2f} ({policy.auto_action.value})"
    )
    return f"{review}, {act}"


def verdict_lines(name: str, verdict: Verdict) -> str:
    if verdict.status is CheckStatus.UNREADABLE:
        return f"**{name}**: not checked: {verdict.problem}"
    if verdict.status is CheckStatus.ERROR:
        return f"**{name}**: could not be checked right now ({verdict.problem})"
    head = f"**{name}**: " + ("⚠️ " + verdict.summary if verdict.flagged else "✅ safe")
    return f"{head}\nscores: {scores_text(verdict.scores)}\nlabels: {labels_text(verdict.labels)}"


def scan_report(results: Sequence[tuple[str, Verdict | str]]) -> str:
    """One block per image; a string result is a download problem."""
    if not results:
        return "No image found to scan (attachments, or image links from Discord's CDN)."
    blocks = [
        f"**{name}**: {result}" if isinstance(result, str) else verdict_lines(name, result)
        for name, result in results
    ]
    return _clip("\n\n".join(blocks), 1900)
