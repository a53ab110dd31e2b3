"""The real Meshy client downloading generated files from the local Meshy double: the models and
thumbnails load, files are written whole, size limits hold and expired links are reported."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
import trimesh
from PIL import Image

from inference.remote.meshy import MeshyAssetUnavailable, MeshyClient, MeshyDownloadTooLarge
from tests.fakes.meshy_api.server import FakeMeshy
from tests.inference.remote.meshy.parts import _follow


async def test_downloads_match_the_served_files_and_load(meshy: FakeMeshy, client: MeshyClient) -> None:
    preview_id = await client.create_preview("a downloadable thing", target_formats=["glb", "obj", "stl"])
    preview, _ = await _follow(client, preview_id)
    assert set(preview.model_urls) == {"glb", "obj", "mtl", "stl"}

    glb = await client.download(preview.model_urls["glb"], max_bytes=1_000_000)
    assert glb == meshy.asset_bytes(preview_id, "model.glb")
    scene = trimesh.load(io.BytesIO(glb), file_type="glb")
    assert isinstance(scene, trimesh.Scene)
    assert sum(len(mesh.faces) for mesh in scene.geometry.values()) > 0

    obj = await client.download(preview.model_urls["obj"], max_bytes=1_000_000)
    assert b"mtllib model.mtl" in obj
    loaded = trimesh.load(io.BytesIO(obj), file_type="obj")
    assert isinstance(loaded, trimesh.Trimesh) and len(loaded.faces) > 0
    assert b"newmtl" in await client.download(preview.model_urls["mtl"], max_bytes=100_000)

    assert preview.thumbnail_url is not None
    thumbnail = await client.download(preview.thumbnail_url, max_bytes=1_000_000)
    assert Image.open(io.BytesIO(thumbnail)).format == "PNG"


async def test_download_to_file_and_size_limit(meshy: FakeMeshy, client: MeshyClient, tmp_path: Path) -> None:
    refine_id = await client.create_refine((await _follow(client, await client.create_preview("box")))[0].id)
    refined, _ = await _follow(client, refine_id)
    target = tmp_path / "model.fbx"
    written = await client.download_to_file(refined.model_urls["fbx"], target, max_bytes=1_000_000)
    saved = await asyncio.to_thread(target.read_bytes)
    assert saved == meshy.asset_bytes(refine_id, "model.fbx") and written == len(saved)
    assert saved.startswith(b"Kaydara FBX Binary")

    with pytest.raises(MeshyDownloadTooLarge):
        await client.download(refined.model_urls["glb"], max_bytes=100)
    with pytest.raises(MeshyDownloadTooLarge):
        await client.download_to_file(refined.model_urls["glb"], tmp_path / "big.glb", max_bytes=100)
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("big.glb*")))


async def test_expired_asset_links(meshy: FakeMeshy, client: MeshyClient) -> None:
    meshy.config.asset_ttl_s = -60
    task, _ = await _follow(client, await client.create_preview("expired"))
    with pytest.raises(MeshyAssetUnavailable) as caught:
        await client.download(task.model_urls["glb"], max_bytes=1_000_000)
    assert caught.value.status == 403
    assert "Signature" not in str(caught.value)  # signed query strings stay out of logs
