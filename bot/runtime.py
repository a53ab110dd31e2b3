"""The objects Lumi runs on, built once from Settings and shared by the bot, the web server and the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot import __version__
from bot.config import Settings
from bot.services.cache_sync import CacheSync
from bot.services.comments import CommentService, build_comment_service
from bot.services.generate3d import GenerationService, build_generation_service
from bot.services.moderation import ModerationService, build_moderation_service
from bot.services.rate_limits import RateLimits, build_rate_limits
from bot.services.status import StatusService
from inference.registry import ModelRegistry
from inference.tensorflow_support import import_torch_side
from inference.threads import apply_thread_policy
from storage.blob_stores import open_blob_store
from storage.blobs import BlobStore
from storage.db import Database
from storage.links import LinkSigner

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    database: Database
    blobs: BlobStore
    links: LinkSigner
    registry: ModelRegistry
    status: StatusService
    moderation: ModerationService
    generation: GenerationService
    comments: CommentService
    rate_limits: RateLimits
    cache_sync: CacheSync
    public_base_url: str = ""

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        """Open the database (running migrations), the blob store and the model registry."""
        # Before any model loads: the frameworks size their thread pools once.
        apply_thread_policy(settings.inference_threads)
        # torch and triton load here, once, before model threads race to load TensorFlow and torch
        # models side by side (TensorFlow loaded first makes a later triton import crash the process).
        # With INFERENCE_URL the torch models run in the service: a gateway skips them (seconds and
        # hundreds of MB), and what still loads here (custom classifiers) imports them through
        # import_keras, which loads torch's side first on its own thread.
        if not settings.inference_url:
            import_torch_side()
        settings.ensure_data_dir()
        # Before the database: a link secret that cannot be read or written stops start-up in one line.
        settings.link_secret_value()
        database = Database(settings.resolved_database_url)
        try:
            if migrate:
                await database.upgrade()
            await database.ping()
            log.info("database ready (%s)", database.backend)
            runtime = cls._assemble(settings, database)
            # Only serving processes listen: `unopened` runtimes never connect to anything.
            runtime.cache_sync.start()
            return runtime
        except BaseException:
            await database.close()
            raise

    @classmethod
    def unopened(cls, settings: Settings) -> Runtime:
        """The same services, with nothing opened: for `lumi sync`, whose cogs only register commands.

        The database handle is built but never connected (an engine connects on first use, and nothing
        uses it here), so neither an unreachable server nor a missing SQLite file matters, and none is
        created. No model loads either; the thread policy is left to a runtime that will run models.
        """
        return cls._assemble(settings, Database(settings.resolved_database_url))

    @classmethod
    def _assemble(cls, settings: Settings, database: Database) -> Runtime:
        blobs = open_blob_store(settings.blob_store_settings())
        links = LinkSigner(settings.link_secret_value(), default_ttl_s=settings.link_ttl_s)
        registry = ModelRegistry(device=settings.inference_device, remote=settings.remote_models())
        status = StatusService(version=__version__, database=database, registry=registry)
        moderation = build_moderation_service(settings, database, blobs, registry)
        generation = build_generation_service(settings, database, blobs)
        # Distributed processes share their limits through Redis; an embedded one keeps them in memory.
        rate_limits = build_rate_limits(
            settings.redis_url if settings.lumi_mode == "distributed" else None,
            key_prefix=settings.redis_key_prefix,
        )
        comments = build_comment_service(
            settings, registry, database=database, moderation=moderation, cooldowns=rate_limits
        )
        # Distributed processes on PostgreSQL tell each other which guild's cached settings changed.
        shared = settings.lumi_mode == "distributed" and database.backend == "postgresql"
        cache_sync = CacheSync(database if shared else None)
        comments.share_through(cache_sync)
        moderation.known_hashes.share_through(cache_sync)
        return cls(
            settings=settings,
            database=database,
            blobs=blobs,
            links=links,
            registry=registry,
            status=status,
            moderation=moderation,
            generation=generation,
            comments=comments,
            rate_limits=rate_limits,
            cache_sync=cache_sync,
            public_base_url=settings.resolved_public_base_url,
        )

    def download_url(self, key: str, *, ttl_s: int | None = None) -> str:
        token = self.links.sign(key, ttl_s=ttl_s)
        return f"{self.public_base_url}/files/{token}"

    async def close(self) -> None:
        """Release models first (they may still be finishing work), then the blob store and the database."""
        try:
            # Generation first: stopping its jobs leaves their rows as they are, to resume at next start.
            await self.generation.close()
            await self.comments.close()
            await self.moderation.close()
            await self.registry.close()
            await self.rate_limits.close()
            await self.cache_sync.close()
        finally:
            try:
                await self.blobs.close()
            finally:
                await self.database.close()
