"""What one download and one decode per commented photo save, against the old path, in the same run.

    .venv/bin/python bench/comments_fetch.py [--rounds 5] [--json]

In a channel with comments on, moderation and comments answer the same photo. The old path fetched it
twice (each listener through the `ImageFetcher`) and decoded it twice (moderation on its pool, with the
perceptual hash; comments on theirs). The new path fetches and decodes it once, on moderation's side, and
hands bytes and frames to comments with the verdict (`VerdictFeed.publish` / `wait_and_take`). The models
run the same number of times on both paths (the verdict was already shared), so they are left out: what
is measured is the work that differs.

The photos are the package photos at five sizes (PNG and JPEG), served over real HTTP by a local server
standing in for Discord's CDN. Each round runs every photo through both paths, one photo at a time, old
and new alternating photo by photo; the figures are per photo (median over the photos of a round) and
per round (total). One at a time, they are the work each path costs, downloads and decoding, not the
latency of a post: on the old path the two listeners ran side by side. Not a test: figures depend on the
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

# Run as `python bench/comments_fetch.py`, this folder is on the path: the moderation bench's photo list.
from moderation import package_photos

from bot.services.image_fetch import FetchedImage, ImageFetcher
from bot.services.moderation import (
    CheckedImage,
    CheckStatus,
    HeldImage,
    ModerationConfig,
    PostVerdict,
    Verdict,
    VerdictFeed,
)

# A bench may look inside: the verdict handed over needs a decision, and no model runs here to make one.
from bot.services.moderation.decisions import Decision, Level
from bot.services.moderation.policy import Action
from inference.images import DecodedImage, ImageLimits, decode_image, phash

PASSED = Verdict(status=CheckStatus.CHECKED, decision=Decision(Level.SAFE, Action.NONE))

LONG_SIDES = (480, 1024, 1600, 2400, 4000)


def corpus() -> list[tuple[str, bytes]]:
    """Each package photo at each size, alternately PNG (large files) and JPEG (small ones)."""
    photos: list[tuple[str, bytes]] = []
    for index, (name, image) in enumerate(package_photos()):
        for side in LONG_SIDES:
            scale = side / max(image.size)
            resized = image.resize((round(image.width * scale), round(image.height * scale)))
            fmt = "PNG" if (index + side) % 2 else "JPEG"
            buffer = io.BytesIO()
            resized.convert("RGB").save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
            photos.append((f"{name}-{side}.{fmt.lower()}", buffer.getvalue()))
    return photos


class Cdn:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests = 0
        self.bytes_sent = 0

    async def handle(self, request: web.Request) -> web.Response:
        data = self.files[request.match_info["name"]]
        self.requests += 1
        self.bytes_sent += len(data)
        return web.Response(body=data, content_type="image/png")


class Paths:
    """The old and the new path, with the parts they share (fetcher, decoding caps, thread pools)."""

    def __init__(self, base_url: str, host: str) -> None:
        config = ModerationConfig(fetch_hosts=(host,))
        self.base_url = base_url
        self.limits: ImageLimits = config.image_limits
        self.fetcher = ImageFetcher(allowed_hosts=config.fetch_hosts, max_bytes=config.max_image_bytes)
        self.moderation_pool = ThreadPoolExecutor(2, thread_name_prefix="bench-decode")
        self.comment_pool = ThreadPoolExecutor(2, thread_name_prefix="bench-comment")
        self.feed = VerdictFeed()
        self.feed.start_publishing()
        self.message_id = 0

    async def _moderation_side(self, url: str) -> tuple[bytes, DecodedImage]:
        image = await self.fetcher.fetch(url)
        loop = asyncio.get_running_loop()
        decoded = await loop.run_in_executor(self.moderation_pool, self._decode_and_hash, image.data)
        return image.data, decoded

    def _decode_and_hash(self, data: bytes) -> DecodedImage:
        decoded = decode_image(data, limits=self.limits)
        phash(decoded.frames[0])
        return decoded

    async def old(self, name: str) -> DecodedImage:
        """Both listeners fetch and decode the photo for themselves."""
        url = f"{self.base_url}/attachments/{name}"
        await self._moderation_side(url)
        image = await self.fetcher.fetch(url)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.comment_pool, lambda: decode_image(image.data, limits=self.limits)
        )

    async def new(self, name: str) -> DecodedImage:
        """Moderation fetches and decodes; comments take bytes and frames with the verdict."""
        url = f"{self.base_url}/attachments/{name}"
        self.message_id += 1
        message_id = self.message_id
        reader = asyncio.create_task(self.feed.wait_and_take(message_id, timeout_s=30.0, new_post=True))
        await asyncio.sleep(0)
        self.feed.expect(message_id)
        data, decoded = await self._moderation_side(url)
        checked = CheckedImage(PASSED, decoded, self.limits)
        self.feed.publish(
            message_id,
            PostVerdict(flagged=False, images={}),
            downloads={url: HeldImage(FetchedImage(url, name, data), checked)},
        )
        _, held = await reader
        frames = held[url].checked.frames_under(self.limits)
        assert frames is not None
        return frames

    async def close(self) -> None:
        await self.fetcher.close()
        self.moderation_pool.shutdown()
        self.comment_pool.shutdown()


async def timed(run: Callable[[str], Awaitable[DecodedImage]], name: str) -> float:
    started = time.perf_counter()
    await run(name)
    return (time.perf_counter() - started) * 1000.0


async def bench(rounds: int) -> dict[str, Any]:
    photos = corpus()
    cdn = Cdn(dict(photos))
    app = web.Application()
    app.router.add_get("/attachments/{name}", cdn.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    paths = Paths(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}")
    results: list[dict[str, Any]] = []
    try:
        for name, _ in photos[:3]:  # warm-up: connections, Pillow's plugins, thread pools
            await paths.old(name)
            await paths.new(name)
        for number in range(1, rounds + 1):
            old_ms: list[float] = []
            new_ms: list[float] = []
            traffic = {"old": [0, 0], "new": [0, 0]}
            # Old and new alternate photo by photo, so that load from elsewhere falls on both alike.
            for name, _ in photos:
                for label, run, times in (("old", paths.old, old_ms), ("new", paths.new, new_ms)):
                    before = (cdn.requests, cdn.bytes_sent)
                    times.append(await timed(run, name))
                    traffic[label][0] += cdn.requests - before[0]
                    traffic[label][1] += cdn.bytes_sent - before[1]
            old_p50, new_p50 = statistics.median(old_ms), statistics.median(new_ms)
            results.append(
                {
                    "round": number,
                    "photos": len(photos),
                    "old_ms_p50": round(old_p50, 2),
                    "new_ms_p50": round(new_p50, 2),
                    "saved_ms_p50": round(old_p50 - new_p50, 2),
                    "old_ms_total": round(sum(old_ms), 1),
                    "new_ms_total": round(sum(new_ms), 1),
                    "speedup_total": round(sum(old_ms) / sum(new_ms), 2),
                    "fetches_per_photo": {k: v[0] / len(photos) for k, v in traffic.items()},
                    "mb_per_photo": {k: round(v[1] / len(photos) / 2**20, 3) for k, v in traffic.items()},
                }
            )
    finally:
        await paths.close()
        await runner.cleanup()
    return {"rounds": results}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(bench(args.rounds))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("per commented photo: old path (2 fetches, 2 decodes) against new (1 fetch, 1 decode)")
    for row in report["rounds"]:
        print(
            f"round {row['round']}: {row['photos']} photos, p50 {row['old_ms_p50']:.1f} -> "
            f"{row['new_ms_p50']:.1f} ms (saves {row['saved_ms_p50']:.1f} ms), total "
            f"{row['old_ms_total']:.0f} -> {row['new_ms_total']:.0f} ms ({row['speedup_total']:.2f}x), "
            f"fetches {row['fetches_per_photo']['old']:.0f} -> {row['fetches_per_photo']['new']:.0f}, "
            f"{row['mb_per_photo']['old']:.2f} -> {row['mb_per_photo']['new']:.2f} MB downloaded"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
