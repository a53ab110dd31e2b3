"""The playground's JSON API through aiohttp's test client, on a real runtime (real models, real files).

Moderation answers what `check_image` answers and re-judges without the models; bad input, the bot's
limits, the rate limit and the same-origin rule each get a clear answer; comments and the 3D prompt
check work without any external service.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from bot.runtime import Runtime
from bot.services.moderation import BOT_ACTIONS, DEFAULT_POLICY
from bot.web.app import create_app
from tests.conftest import make_settings
from tests.fakes.images import animated_gif, encode, gradient, photo_bytes

ClientMaker = Callable[..., Awaitable[tuple[TestClient[Any, Any], Runtime]]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[ClientMaker]:
    opened: list[tuple[TestClient[Any, Any], Runtime]] = []

    async def make(
        *, playground_mode: bool = True, **overrides: object
    ) -> tuple[TestClient[Any, Any], Runtime]:
        overrides.setdefault("comment_objects_download", False)
        runtime = await Runtime.open(make_settings(tmp_path / f"lumi-{len(opened)}", **overrides))
        client: TestClient[Any, Any] = TestClient(
            TestServer(create_app(runtime, playground_mode=playground_mode))
        )
        await client.start_server()
        opened.append((client, runtime))
        return client, runtime

    yield make
    for client, runtime in opened:
        await client.close()
        await runtime.close()


def _origin(client: TestClient[Any, Any]) -> dict[str, str]:
    return {"Origin": str(client.make_url("")).rstrip("/")}


def _photo(name: str) -> bytes:
    data = photo_bytes(name)
    if data is None:
        pytest.skip(f"the package that ships the {name} photo is not installed")
    return data


def _form(*files: tuple[str, bytes], **fields: str) -> aiohttp.FormData:
    # Browsers send a FormData as multipart even without files; so does this.
    form = aiohttp.FormData(default_to_multipart=True)
    for filename, data in files:
        form.add_field("image", data, filename=filename, content_type="application/octet-stream")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


def _nudenet_requests() -> float:
    return REGISTRY.get_sample_value("lumi_inference_request_seconds_count", {"model": "nudenet"}) or 0.0


async def test_check_gives_the_bots_verdict_scores_and_boxes(make_client: ClientMaker) -> None:
    client, runtime = await make_client()
    coffee, astronaut = _photo("coffee"), _photo("astronaut")
    response = await client.post(
        "/playground/api/moderation/check",
        data=_form(("coffee.png", coffee), ("astronaut.png", astronaut)),
        headers=_origin(client),
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert [image["name"] for image in body["images"]] == ["coffee.png", "astronaut.png"]
    for image, data in zip(body["images"], (coffee, astronaut), strict=True):
        bot = await runtime.moderation.check_image(data)
        assert image["scored"]["status"] == "checked"
        assert image["scored"]["scores"] == bot.scores
        assert image["verdict"]["bot_action"] == BOT_ACTIONS[bot.decision.action]
        assert image["verdict"]["reason"] == bot.decision.reason
        assert image["preview"].startswith("data:image/jpeg;base64,")
        [frame] = image["frames"]
        assert frame["width"] > 0 and frame["height"] > 0
        for detection in frame["detections"]:
            x, y, w, h = detection["box"]
            assert 0 <= x < frame["width"] and 0 <= y < frame["height"] and w > 0 and h > 0
    categories = {rule["name"]: rule for rule in body["policy"]["categories"]}
    assert categories["sexual_explicit"]["review"] == DEFAULT_POLICY.rules["sexual_explicit"].review
    assert body["policy"]["overrides"] == {}


async def test_judge_re_applies_a_policy_without_running_the_models(make_client: ClientMaker) -> None:
    client, _ = await make_client()
    response = await client.post(
        "/playground/api/moderation/check",
        data=_form(("coffee.png", _photo("coffee"))),
        headers=_origin(client),
    )
    [image] = (await response.json())["images"]
    score = image["scored"]["scores"]["sexual_explicit"]
    assert image["verdict"]["bot_action"] == "allow" and score > 0.05
    before = _nudenet_requests()

    strict = {"categories": {"sexual_explicit": {"review": round(score - 0.01, 2)}}}
    response = await client.post(
        "/playground/api/moderation/judge",
        json={"policy": strict, "images": [image["scored"]]},
        headers=_origin(client),
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    [verdict] = body["verdicts"]
    assert verdict["bot_action"] == "hold"
    assert verdict["category"] == "sexual_explicit" and "review threshold" in verdict["reason"]
    assert body["policy"]["overrides"] == strict
    # The same policy as text (what the editor's box holds) and an alert-only review give "alert".
    alert = {"categories": {"sexual_explicit": {"review": 0.01, "review_action": "alert"}}}
    response = await client.post(
        "/playground/api/moderation/judge",
        json={"policy": json.dumps(alert), "images": [image["scored"]]},
        headers=_origin(client),
    )
    assert (await response.json())["verdicts"][0]["bot_action"] == "alert"
    assert _nudenet_requests() == before


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "must be a JSON object"),
        ('{"categories": {"nudity": {"review": 0.5}}}', "unknown category 'nudity'"),
        ('{"categories": {"suggestive": {"review": 2}}}', "suggestive.review must be between 0 and 1"),
    ],
)
async def test_a_bad_policy_is_refused_with_the_reason(
    make_client: ClientMaker, policy: str, expected: str
) -> None:
    client, _ = await make_client()
    response = await client.post(
        "/playground/api/moderation/judge", json={"policy": policy, "images": []}, headers=_origin(client)
    )
    assert response.status == 400
    assert expected in (await response.json())["error"]


async def test_files_the_bot_would_not_check_say_why_and_the_rest_are_checked(
    make_client: ClientMaker,
) -> None:
    client, _ = await make_client(moderation_max_image_mb=0.05, moderation_max_images_per_message=3)
    small = encode(gradient(), "PNG")
    files = [
        ("broken.png", b"\x89PNG\r\n\x1a\nthis is not really a png"),
        ("huge.png", small + bytes(80 * 1024)),
        ("fine.png", small),
        ("fourth.png", small),
    ]
    response = await client.post(
        "/playground/api/moderation/check", data=_form(*files), headers=_origin(client)
    )
    assert response.status == 200, await response.text()
    by_name = {image["name"]: image for image in (await response.json())["images"]}
    assert by_name["fine.png"]["scored"]["status"] == "checked"
    broken = by_name["broken.png"]
    assert broken["scored"]["status"] == "unreadable" and broken["verdict"]["bot_action"] == "not checked"
    assert broken["verdict"]["reason"] and broken["preview"] is None
    huge = by_name["huge.png"]
    assert "larger than the 0.05 MB" in huge["scored"]["problem"]
    # An image too large to check is one Discord still shows: the default policy alerts the moderators.
    assert huge["verdict"]["bot_action"] == "alert"
    assert "past the first 3 images" in by_name["fourth.png"]["scored"]["problem"]


async def test_an_animation_shows_its_sampled_frames(make_client: ClientMaker) -> None:
    client, runtime = await make_client()
    response = await client.post(
        "/playground/api/moderation/check",
        data=_form(("moving.gif", animated_gif(30))),
        headers=_origin(client),
    )
    [image] = (await response.json())["images"]
    assert image["animated"] is True and image["frames_total"] == 30
    sampled = runtime.moderation.checker.limits.max_frames
    assert len(image["frames"]) == sampled
    assert [frame["index"] for frame in image["frames"]][:1] == [0] and image["frames"][-1]["index"] == 29
    assert all(frame["thumbnail"].startswith("data:image/jpeg;base64,") for frame in image["frames"])


async def test_an_empty_or_wrong_request_gets_a_message(make_client: ClientMaker) -> None:
    client, _ = await make_client()
    headers = _origin(client)
    response = await client.post("/playground/api/moderation/check", data=_form(), headers=headers)
    assert response.status == 400 and "at least one image" in (await response.json())["error"]
    response = await client.post("/playground/api/moderation/check", json={"image": "x"}, headers=headers)
    assert response.status == 400 and "form upload" in (await response.json())["error"]
    response = await client.post(
        "/playground/api/moderation/judge",
        data=b"not json",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status == 400 and "JSON object" in (await response.json())["error"]
    bad_scores = {"policy": {}, "images": [{"status": "checked", "scores": {"suggestive": "high"}}]}
    response = await client.post("/playground/api/moderation/judge", json=bad_scores, headers=headers)
    assert response.status == 400 and "category name -> number" in (await response.json())["error"]


async def test_a_link_from_a_host_the_bot_does_not_fetch_is_not_checked(make_client: ClientMaker) -> None:
    client, _ = await make_client()
    response = await client.post(
        "/playground/api/moderation/check",
        data=_form(url="https://example.org/cat.png"),
        headers=_origin(client),
    )
    [image] = (await response.json())["images"]
    assert image["verdict"]["bot_action"] == "not checked"
    assert "not an allowed host" in image["scored"]["problem"]
    assert "cdn.discordapp.com" in image["scored"]["problem"]


async def test_posts_from_other_sites_are_refused(make_client: ClientMaker) -> None:
    client, _ = await make_client()
    url = "/playground/api/comments/labels"
    body = {"labels": "기쁨"}
    response = await client.post(url, json=body)
    assert response.status == 403 and "Origin" in (await response.json())["error"]
    response = await client.post(url, json=body, headers={"Origin": "https://evil.example"})
    assert response.status == 403 and "another site" in (await response.json())["error"]
    response = await client.post(url, json=body, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status == 403
    response = await client.post(url, json=body, headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status == 200
    response = await client.post(url, json=body, headers=_origin(client))
    assert response.status == 200
    # Reading needs no origin: the status is polled by the page.
    assert (await client.get("/playground/api/status")).status == 200


async def test_each_client_is_rate_limited(make_client: ClientMaker) -> None:
    client, _ = await make_client(playground_rate_limit="3/minute")
    url = "/playground/api/comments/labels"
    statuses = [
        (await client.post(url, json={"labels": "joy"}, headers=_origin(client))).status for _ in range(3)
    ]
    assert statuses == [200, 200, 200]
    response = await client.post(url, json={"labels": "joy"}, headers=_origin(client))
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "Too many requests" in (await response.json())["error"]
    # Polling the status does not use the allowance up, and is still answered.
    assert (await client.get("/playground/api/status")).status == 200


async def test_labels_get_a_comment_from_every_backend(make_client: ClientMaker) -> None:
    client, _ = await make_client()
    response = await client.post(
        "/playground/api/comments/labels",
        json={"labels": "기쁨, 재킷", "language": "ko"},
        headers=_origin(client),
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert [label["ko"] for label in body["labels"]] == ["기쁨", "재킷"]
    tries = {item["backend"]: item for item in body["comments"]}
    assert set(tries) == {"local", "llm", "template"}
    assert tries["template"]["comment"] and tries["template"]["elapsed_ms"] >= 0
    assert tries["local"]["comment"] or tries["local"]["problem"]
    assert tries["llm"]["comment"] is None and "COMMENT_LLM_BASE_URL" in tries["llm"]["problem"]
    for bad, message in (({"labels": " , "}, "at least one label"), ({"labels": 5}, "JSON object")):
        response = await client.post("/playground/api/comments/labels", json=bad, headers=_origin(client))
        assert response.status == 400 and message in (await response.json())["error"]


async def test_a_photo_that_is_not_an_image_gets_the_reason(make_client: ClientMaker) -> None:
    client, _ = await make_client()
    response = await client.post(
        "/playground/api/comments/photo", data=_form(("notes.jpg", b"just text")), headers=_origin(client)
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error.startswith("notes.jpg: ") and len(error) > len("notes.jpg: ") + 5


async def test_the_prompt_check_works_without_meshy_and_says_what_to_set(make_client: ClientMaker) -> None:
    client, _ = await make_client(prompt_blocked_words=["forbiddenword"], enhancer_backend="keywords")
    headers = _origin(client)
    response = await client.post(
        "/playground/api/3d/check", json={"prompt": "a wooden chair"}, headers=headers
    )
    body = await response.json()
    assert body["allowed"] is True and body["enhanced"]["text"] and body["enhanced"]["backend"] == "keywords"
    assert "MESHY_API_KEY=msy_dummy_api_key_for_test_mode_12345678" in body["meshy_hint"]
    response = await client.post(
        "/playground/api/3d/check", json={"prompt": "a forbiddenword statue"}, headers=headers
    )
    body = await response.json()
    assert body["allowed"] is False and body["enhanced"] is None and body["message"]
    response = await client.post(
        "/playground/api/3d/jobs", json={"prompt": "a wooden chair"}, headers=headers
    )
    assert response.status == 409 and "MESHY_API_KEY" in (await response.json())["error"]
    response = await client.post("/playground/api/3d/check", json={"prompt": "  "}, headers=headers)
    assert response.status == 400
    jobs = await (await client.get("/playground/api/3d/jobs")).json()
    assert jobs["enabled"] is False and jobs["jobs"] == []


async def test_the_page_allows_only_lumis_own_scripts(make_client: ClientMaker) -> None:
    client, _ = await make_client()
    response = await client.get("/")
    assert response.status == 200
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    page = await response.text()
    assert '<script type="module" src="/static/playground/main.js">' in page
    assert "DISCORD_TOKEN" in page and 'id="moderation-card"' in page
    script = await client.get("/static/playground/main.js")
    assert script.status == 200
    status = await (await client.get("/playground/api/status")).json()
    assert {"nudenet", "open_nsfw"} <= {model["name"] for model in status["models"]}
    assert status["limits"]["max_images"] == 10 and status["features"]["meshy"] is False


async def test_beside_a_bot_the_playground_needs_the_setting(make_client: ClientMaker) -> None:
    client, _ = await make_client(playground_mode=False)
    response = await client.get("/")
    page = await response.text()
    assert "PLAYGROUND_WITH_BOT" in page and 'id="moderation-card"' not in page
    assert (await client.get("/playground/api/status")).status == 404
    client, _ = await make_client(playground_mode=False, playground_with_bot=True)
    page = await (await client.get("/")).text()
    assert 'id="moderation-card"' in page and 'id="with-bot"' in page
    assert (await client.get("/playground/api/status")).status == 200
