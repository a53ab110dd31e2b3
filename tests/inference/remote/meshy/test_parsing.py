"""The Meshy client's reading of what Meshy sends: drifting response shapes from the local Meshy double,
task JSON with nulls and junk, and server-sent events split across chunks."""

from __future__ import annotations

from inference.remote.meshy import MeshyClient, MeshyStatus, MeshyTask, SseParser
from tests.fakes.meshy_api.server import FakeMeshy
from tests.inference.remote.meshy.parts import _follow


async def test_drifting_shapes_are_tolerated(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.config.drift = True
    meshy.config.pending_s = 10.0
    task_id = await client.create_preview("drifting")
    pending = await client.get_task(task_id)
    assert pending.status is MeshyStatus.PENDING
    assert pending.raw["model_urls"] == {"glb": ""} and pending.model_urls == {}
    assert pending.raw["task_error"] is None and pending.error_message == ""
    assert pending.texture_urls == [] and pending.thumbnail_url is None

    meshy.advance(10.0)
    done, _ = await _follow(client, task_id)
    assert done.succeeded and "glb" in done.model_urls
    assert "unknown_future_field" in done.raw


def test_task_parsing_tolerates_nulls_and_junk() -> None:
    task = MeshyTask.from_json(
        {
            "id": "t1",
            "status": "in_progress",
            "progress": "42",
            "preceding_tasks": None,
            "model_urls": None,
            "texture_urls": [{"base_color": ""}, None, {"normal": "https://x/n.png"}],
            "task_error": None,
            "created_at": None,
            "seed": 3.0,
            "thumbnail_url": "",
            "extra": [1, 2],
        }
    )
    assert task.status is MeshyStatus.IN_PROGRESS and task.progress == 42
    assert task.model_urls == {} and task.texture_urls == [{"normal": "https://x/n.png"}]
    assert task.thumbnail_url is None and task.created_at == 0 and task.seed == 3
    assert MeshyTask.from_json({"id": "t2", "status": "EXPIRED_SOMEHOW"}).status is MeshyStatus.IN_PROGRESS
    assert MeshyTask.from_json({"id": "t3", "status": "CANCELLED"}).is_terminal
    assert MeshyTask.from_json({"id": "t4", "status": "FAILED", "task_error": "boom"}).error_message == "boom"


def test_sse_parser_handles_split_chunks_comments_and_crlf() -> None:
    parser = SseParser()
    stream = (
        b": keep-alive comment\r\n\r\n"
        b'event: message\r\ndata: {"id": "a",\r\ndata:  "status": "PENDING"}\r\n\r\n'
        b'data: {"id": "a", "status": "SUCCEEDED"}'
    )
    events = []
    for index in range(0, len(stream), 7):
        events += parser.feed(stream[index : index + 7])
    events += parser.close()
    assert [event.event for event in events] == ["message", "message"]
    assert events[0].data == '{"id": "a",\n "status": "PENDING"}'
    assert events[1].data.endswith('"SUCCEEDED"}')
