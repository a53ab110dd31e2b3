"""Small, real 3D assets for the Meshy double, built once per process.

GLB, OBJ+MTL and STL are real meshes exported by trimesh (so tests can load what they download);
PNG thumbnails and textures are drawn with Pillow. FBX, USDZ and 3MF are placeholders with the right
magic bytes or container: nothing in Lumi parses them, it only stores and serves them.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import trimesh
from PIL import Image, ImageDraw

CONTENT_TYPES: Mapping[str, str] = {
    "glb": "model/gltf-binary",
    "obj": "model/obj",
    "mtl": "model/mtl",
    "stl": "model/stl",
    "fbx": "application/octet-stream",
    "usdz": "model/vnd.usdz+zip",
    "3mf": "model/3mf",
    "png": "image/png",
}

TEXTURE_MAPS = ("base_color", "metallic", "normal", "roughness")


@dataclass(frozen=True)
class MeshAssets:
    """Every file a finished task can point at, keyed by file name (``model.glb``, ``preview.png``...)."""

    files: Mapping[str, bytes]

    def model_file(self, fmt: str) -> str:
        return f"model.{fmt}"

    @property
    def glb(self) -> bytes:
        return self.files["model.glb"]

    @property
    def obj(self) -> bytes:
        return self.files["model.obj"]

    @property
    def mtl(self) -> bytes:
        return self.files["model.mtl"]

    @property
    def thumbnail_png(self) -> bytes:
        return self.files["preview.png"]

    def texture(self, name: str) -> bytes:
        return self.files[f"texture_{name}.png"]


def content_type(file_name: str) -> str:
    return CONTENT_TYPES.get(file_name.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _thumbnail(fill: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (128, 128), (24, 26, 33))
    draw = ImageDraw.Draw(image)
    draw.polygon([(64, 14), (112, 40), (112, 92), (64, 118), (16, 92), (16, 40)], fill=fill)
    draw.line([(64, 14), (64, 66), (112, 40)], fill=(240, 240, 240), width=2)
    draw.line([(64, 66), (16, 40)], fill=(240, 240, 240), width=2)
    return _png(image)


def _checker(size: int, a: tuple[int, int, int], b: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (size, size), a)
    draw = ImageDraw.Draw(image)
    step = size // 8
    for row in range(8):
        for col in range(8):
            if (row + col) % 2:
                draw.rectangle([col * step, row * step, (col + 1) * step - 1, (row + 1) * step - 1], fill=b)
    return image


def _fbx_placeholder(label: str) -> bytes:
    # The binary FBX header (magic, 0x1A 0x00, version 7400) so file sniffers accept it.
    header = b"Kaydara FBX Binary  \x00\x1a\x00" + struct.pack("<I", 7400)
    return header + f"lumi test placeholder: {label}\n".encode() + b"\x00" * 64


def _zip_placeholder(member: str, text: str) -> bytes:
    # USDZ requires stored (uncompressed) members; 3MF is an ordinary zip package.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo(member, date_time=(2024, 1, 1, 0, 0, 0))
        archive.writestr(info, text)
    return buffer.getvalue()


def _export_obj(mesh: trimesh.Trimesh, texture_name: str | None) -> tuple[bytes, bytes]:
    obj_text, extras = trimesh.exchange.obj.export_obj(  # type: ignore[no-untyped-call]
        mesh, include_texture=True, mtl_name="model.mtl", return_texture=True
    )
    mtl = extras.get("model.mtl", b"newmtl material_0\nKd 0.7 0.7 0.7\n")
    if texture_name is not None:
        for name in extras:
            if name.endswith(".png"):
                mtl = mtl.replace(name.encode(), texture_name.encode())
    return obj_text.encode(), mtl


def _export(mesh: trimesh.Trimesh, file_type: str) -> bytes:
    data = mesh.export(file_type=file_type)
    if not isinstance(data, bytes):
        raise TypeError(f"trimesh exported {type(data).__name__} for {file_type}")
    return data


def _common(mesh: trimesh.Trimesh, label: str) -> dict[str, bytes]:
    return {
        "model.glb": _export(mesh, "glb"),
        "model.stl": _export(mesh, "stl"),
        "model.fbx": _fbx_placeholder(label),
        "model.usdz": _zip_placeholder("model.usda", f'#usda 1.0\n(\n    doc = "lumi test {label}"\n)\n'),
        "model.3mf": _zip_placeholder("3D/3dmodel.model", f"<!-- lumi test {label} -->\n"),
    }


@functools.cache
def preview_assets() -> MeshAssets:
    """Untextured grey icosphere: what a preview (geometry) task produces."""
    mesh = trimesh.creation.icosphere(subdivisions=1, radius=0.5)
    material = trimesh.visual.material.SimpleMaterial(diffuse=[180, 180, 180, 255])  # type: ignore[no-untyped-call]
    mesh.visual = trimesh.visual.TextureVisuals(material=material)  # type: ignore[no-untyped-call]
    obj, mtl = _export_obj(mesh, None)
    files = _common(mesh, "preview")
    files.update({"model.obj": obj, "model.mtl": mtl, "preview.png": _thumbnail((150, 150, 150))})
    return MeshAssets(files=files)


@functools.cache
def refine_assets() -> MeshAssets:
    """Textured box with PBR maps: what a refine (texture) task produces."""
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    uv = np.asarray(mesh.vertices[:, :2]) + 0.5
    base_color = _checker(64, (205, 90, 40), (60, 140, 200))
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=base_color)  # type: ignore[no-untyped-call]
    obj, mtl = _export_obj(mesh, "texture_base_color.png")
    files = _common(mesh, "refine")
    files.update(
        {
            "model.obj": obj,
            "model.mtl": mtl,
            "preview.png": _thumbnail((205, 90, 40)),
            "texture_base_color.png": _png(base_color),
            "texture_metallic.png": _png(Image.new("L", (16, 16), 30)),
            "texture_normal.png": _png(Image.new("RGB", (16, 16), (128, 128, 255))),
            "texture_roughness.png": _png(Image.new("L", (16, 16), 200)),
        }
    )
    return MeshAssets(files=files)
