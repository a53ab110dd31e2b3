"""The custom classifiers on Ray Serve: the ``classifiers`` family reads the registry the gateways read
(here a DATA_DIR folder) and serves each registration as ``classifier-<id>``. One local Ray cluster for
the module, with the family twice: batched by ``@serve.batch`` (at ``/``) and by Lumi's batcher in the
replica (at ``/lumi``). The pattern classifier (stripes flagged, dots harmless) is the registered model.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest
from PIL import Image

from bot.services.moderation.classifiers.catalog import ClassifierCatalog, classifier_catalog
from bot.services.moderation.classifiers.checks import file_sha256
from bot.services.moderation.classifiers.detector import ClassifierDetector
from bot.services.moderation.classifiers.registry_store import parse_registry, registry_bytes
from bot.services.moderation.classifiers.served import ServedClassifierSource, served_spec
from bot.services.moderation.detector_frames import DetectorFrames
from inference.classifier import ClassScores, KerasClassifierRunner
from inference.images import ImageLimits, decode_image
from inference.registry import ModelRegistry
from inference.serving.client import InferenceClient, ServiceRefused
from inference.serving.remote import RemoteModels
from tests.conftest import make_settings
from tests.fakes.patterns import png_bytes
from tests.serving.parts import http_get

# One Ray cluster start (20-55 s on 2 busy cores) falls into the first test's time.
pytestmark = [pytest.mark.ray, pytest.mark.e2e, pytest.mark.timeout(300)]

Gateway = tuple[ClassifierDetector, InferenceClient]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, pattern_classifier: Path) -> Path:
    """A DATA_DIR whose registry holds the pattern classifier as #1 (for the built-in violence)."""
    root = tmp_path_factory.mktemp("lumi-data")
    classifier_catalog(root).add(pattern_classifier, category="violence", verify=None)
    return root


@pytest.fixture(scope="module")
def classifier_services(data_dir: Path) -> Iterator[dict[str, str]]:
    """The classifiers family on a local 2-CPU Ray cluster, behind Serve's HTTP proxy: the URLs of the
    app batching with ``@serve.batch`` ("serve") and of the one batching with Lumi's batcher ("lumi")."""
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    ray = pytest.importorskip("ray", reason="Ray Serve is not installed (the serve extra)")
    from ray import serve

    from inference.serving.app import FamilyResources, build_app
    from inference.serving.models import ServeOptions

    port = _free_port()
    settings = make_settings(data_dir.parent, data_dir=data_dir)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200_000_000, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        urls: dict[str, str] = {}
        apps: tuple[tuple[Literal["serve", "lumi"], str], ...] = (("serve", ""), ("lumi", "/lumi"))
        for batching, prefix in apps:
            # A wide window: the sharing test looks for two gateways' requests in one model call.
            options = ServeOptions(device="cpu", max_batch_size=32, batch_wait_ms=200.0, batching=batching)
            app = build_app(
                options,
                families=["classifiers"],
                resources={"classifiers": FamilyResources(1, 1.0, 0.0)},
                classifier_source=ServedClassifierSource(settings, refresh_s=0.5),
            )
            serve.run(app, name=f"lumi-{batching}", route_prefix=prefix or "/")
            urls[batching] = f"http://127.0.0.1:{port}{prefix}"
        yield urls
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@pytest.fixture
def classifier_service(classifier_services: dict[str, str]) -> str:
    return classifier_services["serve"]


@pytest.fixture
async def make_gateway(data_dir: Path) -> AsyncIterator[Callable[[str], Gateway]]:
    """``make_gateway(url)``: a gateway's detector whose classifiers run in the service at ``url`` (its
    catalog re-read at every image), and its client."""
    registries: list[tuple[ClassifierDetector, ModelRegistry]] = []

    def make(url: str) -> Gateway:
        client = InferenceClient(url, timeout_s=60.0, retry_deadline_s=1.0, breaker_failures=3)
        registry = ModelRegistry("cpu", remote=RemoteModels(client))
        detector = ClassifierDetector(ClassifierCatalog(data_dir / "classifiers", refresh_s=0.0), registry)
        registries.append((detector, registry))
        return detector, client

    yield make
    for detector, registry in registries:
        await detector.close()
        await registry.close()


@pytest.fixture
def gateway(make_gateway: Callable[[str], Gateway], classifier_service: str) -> Gateway:
    return make_gateway(classifier_service)


@pytest.mark.parametrize("batching", ["serve", "lumi"])
async def test_remote_classifier_scores_equal_the_in_process_ones(
    batching: str,
    make_gateway: Callable[[str], Gateway],
    classifier_services: dict[str, str],
    pattern_classifier: Path,
    moderation_photos: dict[str, bytes],
) -> None:
    detector, _client = make_gateway(classifier_services[batching])
    images = {**moderation_photos, "stripes": png_bytes("stripes", seed=5), "dots": png_bytes("dots", seed=6)}
    limits = ImageLimits()
    remote = {
        name: await detector.scores(data, DetectorFrames(data, limits)) for name, data in images.items()
    }
    assert remote["stripes"]["violence"] > 0.5 > remote["dots"]["violence"]

    local = KerasClassifierRunner(pattern_classifier, "cpu")
    await asyncio.to_thread(local.load)
    try:
        handle = await detector.registry.get("classifier-1")
        for name, data in images.items():
            frames = decode_image(data, limits=limits).frames
            here: list[ClassScores] = await asyncio.to_thread(local.predict_batch, frames)
            there: list[ClassScores] = await asyncio.gather(*(handle.predict(frame) for frame in frames))
            for local_scores, remote_scores in zip(here, there, strict=True):
                assert remote_scores.scores.keys() == local_scores.scores.keys(), name
                for label, score in local_scores.scores.items():
                    assert remote_scores.scores[label] == pytest.approx(score, abs=1e-4), (name, label)
            assert remote[name]["violence"] == pytest.approx(max(s.positive for s in here), abs=1e-4), name
    finally:
        local.close()
    _, batches = await asyncio.to_thread(http_get, f"{classifier_services[batching]}/v2/debug/batches")
    assert sum(json.loads(batches)["classifier-1"]) >= 2 * len(images)


async def test_two_gateways_requests_share_model_calls(
    make_gateway: Callable[[str], Gateway], classifier_service: str
) -> None:
    gateways = [make_gateway(classifier_service)[0] for _ in range(2)]
    dots = png_bytes("dots", seed=9)
    for detector in gateways:  # each registers the classifier at its first image
        assert (await detector.scores(dots, DetectorFrames(dots, ImageLimits())))["violence"] < 0.5
    handles = [await detector.registry.get("classifier-1") for detector in gateways]
    frames = [_plain_picture() for _ in range(8)]
    _, before = await asyncio.to_thread(http_get, f"{classifier_service}/v2/debug/batches")
    seen = len(json.loads(before).get("classifier-1", []))
    # Each gateway's batcher sends its 8 frames as one request; the service's window holds both.
    await asyncio.gather(*(handle.predict(frame) for handle in handles for frame in frames))
    _, after = await asyncio.to_thread(http_get, f"{classifier_service}/v2/debug/batches")
    calls = json.loads(after)["classifier-1"][seen:]
    assert sum(calls) == 16 and max(calls) > 8, calls


async def test_unknown_ids_and_other_registrations_get_clear_answers(
    gateway: Gateway, classifier_service: str, data_dir: Path
) -> None:
    _detector, client = gateway
    registered = ClassifierCatalog(data_dir / "classifiers").load()[0]
    unknown = RemoteModels(client).classifier_factory(replace(served_spec(registered), model="classifier-99"))
    with pytest.raises(ServiceRefused, match=r"'classifier-99' is not registered in the classifier registry"):
        await asyncio.to_thread(unknown("cpu").predict_batch, [_plain_picture()])
    other = RemoteModels(client).classifier_factory(replace(served_spec(registered), sha256="0" * 64))
    with pytest.raises(ServiceRefused, match=r"not the 000000000000… asked for: the gateway and the service"):
        await asyncio.to_thread(other("cpu").predict_batch, [_plain_picture()])
    assert (await asyncio.to_thread(http_get, f"{classifier_service}/v2/models/classifier-1/ready"))[0] == 200
    status, body = await asyncio.to_thread(http_get, f"{classifier_service}/v2/models/classifier-99/ready")
    assert status == 404 and "registered: classifier-1" in json.loads(body)["error"]
    status, body = await asyncio.to_thread(http_get, f"{classifier_service}/v2/models/nudenet/ready")
    assert status == 404 and "classifier-<id>" in json.loads(body)["error"]
    assert await client.breaker_state("classifier-99") == "closed"  # an answer, not a fault


async def test_a_removed_classifier_stops_being_served(
    gateway: Gateway,
    classifier_service: str,
    data_dir: Path,
    pattern_classifier: Path,
) -> None:
    detector, client = gateway
    catalog = ClassifierCatalog(data_dir / "classifiers")
    added = catalog.add(pattern_classifier, category="weapons", review=0.5, verify=None)
    stripes = png_bytes("stripes", seed=8)
    scores = await detector.scores(stripes, DetectorFrames(stripes, ImageLimits()))
    assert scores["weapons"] > 0.5 and scores["violence"] > 0.5
    runner = RemoteModels(client).classifier_factory(served_spec(added))("cpu")

    catalog.remove(added.id)
    deadline = time.monotonic() + 30.0
    while True:
        try:
            await asyncio.to_thread(runner.predict_batch, [_plain_picture()])
        except ServiceRefused as refused:
            assert f"'{added.model_key}' is not registered" in refused.reason
            break
        assert time.monotonic() < deadline, "the removed classifier is still served"
        await asyncio.sleep(0.5)
    scores = await detector.scores(stripes, DetectorFrames(stripes, ImageLimits()))
    assert "weapons" not in scores and scores["violence"] > 0.5  # the others keep serving
    assert not detector.registry.is_registered(added.model_key)


def _plain_picture() -> Image.Image:
    return Image.new("RGB", (64, 64), (200, 30, 30))


async def test_a_registration_whose_model_changed_is_reloaded(
    gateway: Gateway, classifier_service: str, data_dir: Path
) -> None:
    """Runs last: classifier-1 ends up with another model file (the same network, saved again)."""
    _detector, client = gateway
    catalog = ClassifierCatalog(data_dir / "classifiers")
    entry = next(e for e in catalog.load() if e.id == 1)
    before = RemoteModels(client).classifier_factory(served_spec(entry))("cpu")
    await asyncio.to_thread(before.predict_batch, [_plain_picture()])

    model = data_dir / "classifiers" / entry.folder / "model.keras"
    await asyncio.to_thread(_save_again, model)
    changed = replace(entry, sha256=file_sha256(model))
    assert changed.sha256 != entry.sha256
    document = catalog.store.read()
    assert document is not None
    next_id, entries = parse_registry(document.data, where="test")
    entries = [changed if e.id == entry.id else e for e in entries]
    catalog.store.write(registry_bytes(next_id, entries), version=document.version)

    after = RemoteModels(client).classifier_factory(served_spec(changed))("cpu")
    scores = await asyncio.to_thread(
        after.predict_batch, [Image.open(io.BytesIO(png_bytes("stripes", seed=9)))]
    )
    assert scores[0].positive > 0.5
    with pytest.raises(ServiceRefused, match=f"not the {entry.sha256[:12]}… asked for"):
        await asyncio.to_thread(before.predict_batch, [_plain_picture()])


def _save_again(model: Path) -> None:
    from inference.tensorflow_support import import_keras

    keras, _tf = import_keras()
    network = keras.models.load_model(str(model), compile=False)
    copy = model.with_name("again.keras")
    network.save(str(copy))
    copy.replace(model)
