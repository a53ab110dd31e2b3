"""Image moderation: the service the Discord layer, the web playground and the command line talk to. No
Discord here.

ModerationService (service) puts the parts together: scanning (a post's images checked, its verdict
published, a case opened when needed), recording (the case and its evidence written, then what Discord
managed to do), review (a moderator's choice on a case), privacy (a user's data forgotten, expired
evidence deleted), known_hashes and problems (the confirmed images and the problems it remembers). The
policy (policy, decisions, policy_json), the process-wide settings (config, built by build) and each
server's settings (guild_config) are plain data; custom classifiers live in classifiers/.
"""

from __future__ import annotations

from bot.services.moderation.build import build_moderation_service, moderation_config
from bot.services.moderation.cases import CaseChoice, PendingDecision, allowed_choices, case_category
from bot.services.moderation.checker import CheckStatus, ExtraDetector, ImageChecker, Verdict
from bot.services.moderation.classifiers import (
    ClassifierCatalog,
    ClassifierDetector,
    RegisteredClassifier,
    classifier_catalog,
    verify_classifier,
)
from bot.services.moderation.config import ModerationConfig
from bot.services.moderation.evidence_retention import EvidenceRetentionJob
from bot.services.moderation.guild_config import GuildModeration, stored_guild_config
from bot.services.moderation.openai_detector import OpenAIImageDetector
from bot.services.moderation.policy import CATEGORIES, DEFAULT_POLICY, CategoryRule, Policy, describe_policy
from bot.services.moderation.policy_json import PolicyError, parse_policy
from bot.services.moderation.privacy import PurgedEvidence
from bot.services.moderation.recording import PostContext
from bot.services.moderation.scanning import PostOutcome
from bot.services.moderation.service import ModerationService
from bot.services.moderation.unchecked import images_past_limit, refused_downloads
from bot.services.moderation.verdicts import PostVerdict, image_digests

__all__ = [
    "CATEGORIES",
    "DEFAULT_POLICY",
    "CaseChoice",
    "CategoryRule",
    "CheckStatus",
    "ClassifierCatalog",
    "ClassifierDetector",
    "EvidenceRetentionJob",
    "ExtraDetector",
    "GuildModeration",
    "ImageChecker",
    "ModerationConfig",
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
    "Verdict",
    "allowed_choices",
    "build_moderation_service",
    "case_category",
    "classifier_catalog",
    "describe_policy",
    "image_digests",
    "images_past_limit",
    "moderation_config",
    "parse_policy",
    "refused_downloads",
    "stored_guild_config",
    "verify_classifier",
]
