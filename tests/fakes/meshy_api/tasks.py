"""Meshy tasks as the fake Meshy server keeps them: the task record, its status, and the JSON views.

Task state is computed from elapsed time on every read, so no background work runs: a task is PENDING
for ``pending_s``, IN_PROGRESS for ``run_s`` with rising progress, then SUCCEEDED, or FAILED part-way
when a failure was scheduled for it, or CANCELED from the moment it was canceled. Views follow
``docs/MESHY_API.md``: the full task object, the short form streams send while running, and the
null/empty/extra-field shapes live responses drift into.

The test-mode key gets Meshy's fixed sample tasks, frozen at SUCCEEDED.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.meshes import MeshAssets, preview_assets, refine_assets

TEST_MODE_KEY = "msy_dummy_api_key_for_test_mode_12345678"
SAMPLE_PREVIEW_ID = "018a210d-8ba4-705c-b111-1f1776f7f578"
SAMPLE_REFINE_ID = "018a210e-2f3c-7a11-9c42-6d2a1b9e0c35"
SAMPLE_IMAGE_ID = "018a210f-5d6e-7b22-8d53-7e3b2c0f1d46"

TEXT_TO_3D = "/openapi/v2/text-to-3d"
IMAGE_TO_3D = "/openapi/v1/image-to-3d"

DEFAULT_FORMATS = ("glb", "fbx", "obj", "usdz")

# Signs a task's file name into a URL the double serves.
Signer = Callable[["FakeTask", str], str]


@dataclass
class FakeTask:
    id: str
    api_key: str
    api: str
    type: str
    prompt: str
    texture_prompt: str
    formats: tuple[str, ...]
    enable_pbr: bool
    cost: int
    created_mono: float
    created_ms: int
    pending_s: float
    run_s: float
    preceding_at_creation: int
    seed: int
    request: dict[str, Any]
    fail_message: str | None = None
    fail_after_fraction: float = 0.5
    canceled_at: float | None = None
    refunded: bool = False
    frozen_state: tuple[str, int] | None = None

    @property
    def assets(self) -> MeshAssets:
        return refine_assets() if self.type in ("text-to-3d-refine", "image-to-3d") else preview_assets()


@dataclass(frozen=True)
class TaskState:
    status: str
    progress: int
    preceding_tasks: int
    started_ms: int
    finished_ms: int

    @property
    def terminal(self) -> bool:
        return self.status in ("SUCCEEDED", "FAILED", "CANCELED")


def task_state(task: FakeTask, now: float) -> TaskState:
    """Where ``task`` stands at monotonic time ``now``."""
    if task.frozen_state is not None:
        status, progress = task.frozen_state
        return TaskState(status, progress, 0, task.created_ms, task.created_ms)
    elapsed = now - task.created_mono
    started_ms = task.created_ms + int(task.pending_s * 1000)
    finished_ms = started_ms + int(task.run_s * 1000)
    if task.canceled_at is not None and task.canceled_at <= now:
        at_ms = task.created_ms + int((task.canceled_at - task.created_mono) * 1000)
        return TaskState("CANCELED", 0, 0, min(started_ms, at_ms), at_ms)
    if elapsed < task.pending_s:
        remaining = 1.0 - elapsed / task.pending_s if task.pending_s > 0 else 0.0
        preceding = math.ceil(task.preceding_at_creation * remaining)
        return TaskState("PENDING", 0, preceding, 0, 0)
    running = elapsed - task.pending_s
    if task.fail_message is not None:
        fail_at = task.run_s * task.fail_after_fraction
        if running >= fail_at:
            progress = int(100 * task.fail_after_fraction)
            return TaskState("FAILED", progress, 0, started_ms, started_ms + int(fail_at * 1000))
    if running < task.run_s:
        progress = max(1, min(99, int(100 * running / task.run_s))) if task.run_s > 0 else 99
        return TaskState("IN_PROGRESS", progress, 0, started_ms, 0)
    return TaskState("SUCCEEDED", 100, 0, started_ms, finished_ms)


def sample_task(task_id: str, kind: str, body: dict[str, Any]) -> FakeTask:
    """One of Meshy's fixed test-mode sample tasks: already SUCCEEDED, free, always the same prompt."""
    return FakeTask(
        id=task_id,
        api_key=TEST_MODE_KEY,
        api=TEXT_TO_3D if kind != "image-to-3d" else IMAGE_TO_3D,
        type=kind,
        prompt="a monster mask",
        texture_prompt="",
        formats=DEFAULT_FORMATS,
        enable_pbr=True,
        cost=0,
        created_mono=time.monotonic(),
        created_ms=1692771650657,
        pending_s=0.0,
        run_s=0.0,
        preceding_at_creation=0,
        seed=1234,
        request=body,
        frozen_state=("SUCCEEDED", 100),
    )


def task_view(task: FakeTask, state: TaskState, *, full: bool, drift: bool, sign: Signer) -> dict[str, Any]:
    """The task object Meshy returns; ``full=False`` is the short form (id, progress, status)."""
    if not full:
        short: dict[str, Any] = {"id": task.id, "progress": state.progress, "status": state.status}
        if state.status == "PENDING":
            short["preceding_tasks"] = state.preceding_tasks
        return short
    succeeded = state.status == "SUCCEEDED"
    model_urls: dict[str, str] = {}
    texture_urls: list[dict[str, str]] | None = []
    if succeeded:
        for fmt in task.formats:
            model_urls[fmt] = sign(task, f"model.{fmt}")
        if "obj" in task.formats:
            model_urls["mtl"] = sign(task, "model.mtl")
        if task.type != "text-to-3d-preview":
            maps = ("base_color", "metallic", "normal", "roughness") if task.enable_pbr else ("base_color",)
            texture_urls = [{name: sign(task, f"texture_{name}.png") for name in maps}]
    elif drift:
        model_urls = {"glb": ""}
    if drift and not texture_urls:
        texture_urls = None if task.type == "text-to-3d-preview" else []
    view: dict[str, Any] = {
        "id": task.id,
        "type": task.type,
        "status": state.status,
        "progress": state.progress,
        "model_urls": model_urls,
        "thumbnail_url": sign(task, "preview.png") if succeeded else ("" if not drift else None),
        "video_url": "",
        "texture_urls": texture_urls,
        "prompt": task.prompt,
        "texture_prompt": task.texture_prompt,
        "art_style": "",
        "seed": task.seed,
        "preceding_tasks": state.preceding_tasks,
        "created_at": task.created_ms,
        "started_at": state.started_ms,
        "finished_at": state.finished_ms,
        "task_error": {"message": task.fail_message if state.status == "FAILED" else ""},
        "consumed_credits": task.cost,
    }
    if drift:
        if state.status != "FAILED":
            view["task_error"] = None
        if state.status != "PENDING":
            del view["preceding_tasks"]
        del view["video_url"]
        view.update(
            {
                "mode": "refine" if task.type.endswith("refine") else "preview",
                "name": "",
                "expires_at": task.created_ms + 3 * 24 * 3600 * 1000,
                "negative_prompt": None,
                "unknown_future_field": {"nested": [1, 2, 3]},
            }
        )
    return view
