"""What the 3D feature is configured with: one object, built once from `Settings` in `build.py` and handed
to the service, whose parts and whose cog read it from there (nothing else reads the 3D settings).

The defaults are the settings' defaults, so tests and benchmarks can build one with only what they change.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationConfig:
    daily_user_limit: int = 10
    """Jobs one person may start per UTC day (failed jobs do not count); a guild may set its own."""

    daily_guild_limit: int = 100
    """Jobs one guild may start per UTC day, everyone together; a guild may set its own."""

    user_concurrent_limit: int = 2
    """Jobs one person may have queued or running at once."""

    max_concurrent_jobs: int = 8
    """Jobs this Lumi runs at once; the rest wait in Lumi's own line and show their position."""

    queue_retry_s: float = 15.0
    """How often the job at the head of Meshy's full-account line tries again when nothing freed a slot."""

    poll_initial_s: float = 2.0
    """First wait between polls of a Meshy task, when its event stream is not used or broke."""

    poll_max_s: float = 30.0
    """Longest wait between polls; the wait doubles up to it."""

    task_deadline_s: float = 3600.0
    """How long one Meshy task may take before the job fails with "still not finished"."""

    max_asset_bytes: int = 200 * 1024 * 1024
    """Largest file downloaded from Meshy; a larger one fails the job instead of filling the disk."""

    ai_model: str = "latest"
    """The Meshy model asked for ("latest", "meshy-4", "meshy-5", "meshy-6")."""

    enable_pbr: bool = True
    """Ask the refine (texture) task for PBR maps (metallic, roughness, normal) besides the base colour."""

    create_attempts: int = 3
    """Tries to create a Meshy task when the request failed in a way that created nothing."""

    create_backoff_s: float = 2.0
    """First pause between those tries; it doubles each time (with jitter)."""
    meshy_wait_notice_s: float = 3.0
    """A create request unanswered for this long shows "waiting for Meshy" in the job's progress."""

    progress_save_interval_s: float = 2.0
    """Least time between progress writes to the job row (the live view gets every update)."""

    download_concurrency: int = 4
    """Files of one job downloaded from Meshy at once."""

    use_stream: bool = True
    """Follow Meshy tasks over their event stream (falling back to polling); False polls only."""

    keep_days: int = 30
    """Days a finished job's files are kept before the clean-up deletes them; 0 keeps them forever."""

    cleanup_interval_s: float = 3600.0
    """Time between two runs of that clean-up (it also runs once at start)."""

    claimed_jobs: bool = False
    """Distributed mode: jobs are enqueued on PostgreSQL (pgqueuer) and run by whichever worker claims
    them, fenced by the row's lease epoch, instead of by the process that submitted or resumed them."""

    heartbeat_timeout_s: float = 30.0
    """A claimed job whose worker sent no heartbeat for this long is taken over by another worker."""

    reconcile_interval_s: float = 300.0
    """How often a worker enqueues every unfinished job again (skipped when already queued or claimed)."""

    progress_interval_s: float = 2.0
    """Least time between two edits of one Discord progress message (Discord rate-limits edits)."""

    interaction_ttl_s: float = 14 * 60.0
    """How long the progress goes to the interaction reply before moving to a channel message; Discord's
    interaction tokens live 15 minutes, so this stays under that."""
