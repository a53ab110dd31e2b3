"""Image moderation: the service the Discord layer, the web playground and the command line talk to. No
Discord here.

ModerationService (service) puts the parts together: screening (a new post screened in one call:
exemptions, downloads, unchecked accounting, the check), scanning (a post's images checked, its verdict
published, a case opened when needed), recording (the case and its evidence written, then what Discord
managed to do), review (a moderator's choice on a case), privacy (a user's data forgotten, expired
evidence deleted), known_hashes and problems (the confirmed images and the problems it remembers). The
policy (policy, decisions, policy_json), the process-wide settings (config, built by build) and each
server's settings (guild_config) are plain data; custom classifiers live in classifiers/.

What other features use, documented where it lives:
- ``ModerationService.verdict_feed`` (a `VerdictFeed`): moderation's verdict on each new post, and the
  images it downloaded and decoded for it; `expect`, `publish` and `withdraw` are moderation's side,
  `wait` and `wait_and_take` the readers'.
- ``ModerationService.report_problem(guild_id, text)``: something moderators should fix, shown in
  `/moderation status`.
- ``ModerationService.screen_images(guild_id, images, place)``: images checked as a post at that place
  would be, for a feature that has no verdict to wait for.
"""

from __future__ import annotations

from bot.services.moderation.build import build_moderation_service, moderation_config
from bot.services.moderation.cases import CaseChoice, PendingDecision, allowed_choices, case_category
from bot.services.moderation.check_results import CheckedImage, CheckStatus, ExtraDetector, Verdict
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.classifiers import (
    ClassifierCatalog,
    ClassifierDetector,
    RegisteredClassifier,
    ServedClassifierSource,
    classifier_catalog,
    classifier_catalog_for,
    classifier_file_sweep,
    verify_classifier,
)
from bot.services.moderation.config import ModerationConfig
from bot.services.moderation.decisions import Decision
from bot.services.moderation.evidence_retention import EvidenceRetentionJob
from bot.services.moderation.guild_config import GuildModeration, stored_guild_config
from bot.services.moderation.inspection import (
    BOT_ACTIONS,
    FrameFindings,
    ImageInspection,
    ScoredImage,
    bot_action,
)
from bot.services.moderation.openai_detector import OpenAIImageDetector
from bot.services.moderation.policy import CATEGORIES, DEFAULT_POLICY, CategoryRule, Policy, describe_policy
from bot.services.moderation.policy_json import PolicyError, parse_policy, policy_to_json
from bot.services.moderation.privacy import PurgedEvidence
from bot.services.moderation.scanning import PostOutcome
from bot.services.moderation.screening import ScanReport
from bot.services.moderation.service import ModerationService
from bot.services.moderation.verdicts import HeldImage, PostVerdict, VerdictFeed, image_digests
from storage.models import ANONYMOUS_USER_ID, CaseAction, CaseStatus, ModerationCase

__all__ = [
    "ANONYMOUS_USER_ID",
    "BOT_ACTIONS",
    "CATEGORIES",
    "DEFAULT_POLICY",
    "CaseAction",
    "CaseChoice",
    "CaseStatus",
    "CategoryRule",
    "CheckStatus",
    "CheckedImage",
    "ClassifierCatalog",
    "ClassifierDetector",
    "Decision",
    "EvidenceRetentionJob",
    "ExtraDetector",
    "FrameFindings",
    "GuildModeration",
    "HeldImage",
    "ImageChecker",
    "ImageInspection",
    "ModerationCase",
    "ModerationConfig",
    "ModerationService",
    "OpenAIImageDetector",
    "PendingDecision",
    "Policy",
    "PolicyError",
    "PostOutcome",
    "PostVerdict",
    "PurgedEvidence",
    "RegisteredClassifier",
    "ScanReport",
    "ScoredImage",
    "ServedClassifierSource",
    "Verdict",
    "VerdictFeed",
    "allowed_choices",
    "bot_action",
    "build_moderation_service",
    "case_category",
    "classifier_catalog",
    "classifier_catalog_for",
    "classifier_file_sweep",
    "describe_policy",
    "image_digests",
    "moderation_config",
    "parse_policy",
    "policy_to_json",
    "stored_guild_config",
    "verify_classifier",
]
