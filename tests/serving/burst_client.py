"""A gateway-like client process: at wall-clock time START it sends N one-image open_nsfw requests at
once to the service at URL, then prints the scores as JSON. Run as
``python -m tests.serving.burst_client URL START N``."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from inference.images import ImageLimits, decode_image
from inference.moderation import at_moderation_scale
from inference.serving.client import InferenceClient
from inference.serving.codecs import CODECS
from inference.serving.oip import encode_request
from tests.fakes.images import PHOTO_NAMES, photo_bytes


async def burst(url: str, start: float, count: int) -> list[float]:
    codec = CODECS["open_nsfw"]
    limits = at_moderation_scale(ImageLimits())
    photos = [data for name in PHOTO_NAMES if (data := photo_bytes(name)) is not None]
    frames = [decode_image(photos[i % len(photos)], limits=limits).frames[0] for i in range(count)]
    requests = [encode_request(codec.encode_items([frame])) for frame in frames]
    client = InferenceClient(url, timeout_s=60.0, retry_deadline_s=0.0)
    try:
        await asyncio.sleep(max(0.0, start - time.time()))
        outputs = await asyncio.gather(
            *(client.infer("open_nsfw", body, headers) for body, headers in requests)
        )
    finally:
        await client.close()
    return [codec.decode_results(output, 1)[0] for output in outputs]


if __name__ == "__main__":
    url, start, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(asyncio.run(burst(url, start, count))))
