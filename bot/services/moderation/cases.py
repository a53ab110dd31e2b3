"""Moderation cases as moderators see them: the button choices, which apply when, and why one is refused.

Also the look-up of a case that must still exist, shared by everything that changes one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.errors import UserFacingError
from storage.models import CaseAction, CaseStatus, ModerationCase
from storage.repo import cases as repo_cases

__all__ = [
    "CaseChoice",
    "EvidenceFile",
    "PendingDecision",
    "allowed_choices",
    "case_category",
    "case_id_of",
    "case_or_error",
    "refusal",
]


class CaseChoice(StrEnum):
    """The moderator buttons under an alert."""

    CONFIRM = "confirm"
    RESTORE = "restore"
    TIMEOUT = "timeout"
    DISMISS = "dismiss"


@dataclass(frozen=True)
class EvidenceFile:
    filename: str
    data: bytes
    content_type: str


@dataclass
class PendingDecision:
    """A moderator's choice being carried out; the case changes when the ``decide`` block exits."""

    case: ModerationCase
    choice: CaseChoice
    moderator_id: int
    timeout_minutes: int
    evidence: list[EvidenceFile] = field(default_factory=list)
    problem: str | None = None
    post_removed: bool = False

    @property
    def post_still_up(self) -> bool:
        """The flagged post was only alerted on, so confirming it should remove it now."""
        return self.case.action is CaseAction.ALERTED and self.case.message_id is not None

    def fail(self, problem: str) -> None:
        self.problem = problem


def allowed_choices(case: ModerationCase) -> frozenset[CaseChoice]:
    """Which buttons still make sense for a case in its current state."""
    if case.status in (CaseStatus.RESTORED, CaseStatus.DISMISSED):
        return frozenset()
    if case.status is CaseStatus.CONFIRMED:
        return frozenset() if case.action is CaseAction.TIMED_OUT else frozenset({CaseChoice.TIMEOUT})
    choices = {CaseChoice.CONFIRM, CaseChoice.TIMEOUT, CaseChoice.DISMISS}
    if case.action in (CaseAction.DELETED, CaseAction.HELD) and case.evidence_key is not None:
        choices.add(CaseChoice.RESTORE)
    return frozenset(choices)


def case_category(case: ModerationCase) -> str | None:
    if not case.scores:
        return None
    return max(case.scores.items(), key=lambda item: item[1])[0]


def refusal(case: ModerationCase, choice: CaseChoice, *, evidence_missing: bool = False) -> str:
    number = f"Case #{case.case_number}"
    if evidence_missing:
        return f"{number}: the evidence is gone (expired or deleted), nothing to restore."
    if case.status in (CaseStatus.RESTORED, CaseStatus.DISMISSED, CaseStatus.CONFIRMED):
        who = f" by <@{case.decided_by}>" if case.decided_by else ""
        if choice is CaseChoice.TIMEOUT and case.action is CaseAction.TIMED_OUT:
            return f"{number}: the author was already timed out{who}."
        return f"{number} was already {case.status.value}{who}."
    if choice is CaseChoice.RESTORE:
        if case.action is CaseAction.ALERTED:
            return f"{number}: the post was never removed, so there is nothing to restore."
        return f"{number}: the evidence is gone (expired or deleted), nothing to restore."
    return f"{number} cannot be {choice.value}ed now."


def case_id_of(case: ModerationCase) -> int:
    if case.id is None:  # pragma: no cover - every case read from the database has an id
        raise RuntimeError("moderation case without an id")
    return case.id


async def case_or_error(session: AsyncSession, case_id: int) -> ModerationCase:
    case = await repo_cases.get_case_by_id(session=session, case_id=case_id)
    if case is None:
        raise UserFacingError("That case no longer exists.")
    return case
