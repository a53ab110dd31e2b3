"""Image moderation: the service the Discord layer, the web playground and the command line talk to. No
Discord here.

ModerationService (service) puts the parts together: scanning (a post's images checked, its verdict
published, a case opened when needed), recording (the case and its evidence written, then what Discord
managed to do), review (a moderator's choice on a case), privacy (a user's data forgotten, expired
evidence deleted), known_hashes and problems (the confirmed images and the problems it remembers). The
policy (policy, decisions, policy_json) and each server's settings (guild_config) are plain data; custom
classifiers live in classifiers/.
"""

from __future__ import annotations

from bot.services.moderation.cases import CaseChoice, PendingDecision, allowed_choices, case_category
from bot.services.moderation.checker import CheckStatus, ExtraDetector, ImageChecker, Verdict
from bot.services.moderation.classifiers import (
    ClassifierCatalog,
    ClassifierDetector,
    RegisteredClassifier,
    classifier_catalog,
    verify_classifier,
)
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
from bot.services.moderation.recording import PostContext
from bot.services.moderation.scanning import PostOutcome
from bot.services.moderation.service import ModerationService
from bot.services.moderation.unchecked import images_past_limit, refused_downloads
from bot.services.moderation.verdicts import PostVerdict, image_digests

__all__ = [
    "BOT_ACTIONS",
    "CATEGORIES",
    "DEFAULT_POLICY",
    "CaseChoice",
    "CategoryRule",
    "CheckStatus",
    "ClassifierCatalog",
    "ClassifierDetector",
    "Decision",
    "EvidenceRetentionJob",
    "ExtraDetector",
    "FrameFindings",
    "GuildModeration",
    "ImageChecker",
    "ImageInspection",
    "ModerationService",
    "OpenAIImageDetector",
    "PendingDecision",
    "Policy",
    "PolicyError",
    "PostContext",
    "PostOutcome",
    "PostVerdict",
    "PurgedEvidence",
    "RegisteredClassifier",
    "ScoredImage",
    "Verdict",
    "allowed_choices",
    "bot_action",
    "case_category",
    "classifier_catalog",
    "describe_policy",
    "image_digests",
    "images_past_limit",
    "parse_policy",
    "policy_to_json",
    "refused_downloads",
    "stored_guild_config",
    "verify_classifier",
]
