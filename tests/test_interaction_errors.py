"""What the tree-level error handler tells the user for the refusals of the rate-limit check."""

from __future__ import annotations

from discord import app_commands

from bot.interaction_errors import RefusedByCheck, message_for


def test_a_refused_check_shows_its_reason() -> None:
    text = "Lumi cannot check its rate limits right now, so /scan is paused; try again in a minute."
    assert message_for(RefusedByCheck(text)) == (text, True)


def test_a_command_over_its_limit_shows_the_retry_time() -> None:
    error = app_commands.CommandOnCooldown(app_commands.Cooldown(5, 60.0), 41.6)
    assert message_for(error) == ("Slow down: try again in 42 s.", True)
