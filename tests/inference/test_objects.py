"""The Open Images label table and the YOLO object runner on models built here with ultralytics itself.

No pretrained YOLO weights can be downloaded on the test machines, so the detectors are built from
ultralytics' own `yolov8n` architecture file. Their class-score biases are set so that one class wins
everywhere: the runner then has to carry that class through ultralytics' real load, letterbox,
inference and NMS code to the right Korean and English label.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from inference.labels import TABLE_PATH, label_from_text, labels_from_text, oiv7_vocabulary
from inference.perception import Perceiver
from inference.registry import ModelRegistry
from inference.runners.base import ModelUnavailable
from inference.runners.objects import YoloObjectRunner, import_yolo
from tests.fakes.images import photo_bytes

SHARED_KOREAN_NAMES = Path(__file__).resolve().parents[3] / "shared" / "data" / "oiv7_labels_ko.json"


def ultralytics_dir() -> Path:
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ultralytics is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def oiv7_names() -> dict[int, str]:
    config = ultralytics_dir() / "cfg" / "datasets" / "open-images-v7.yaml"
    names = yaml.safe_load(config.read_text(encoding="utf-8"))["names"]
    return {int(key): str(value) for key, value in names.items()}


def build_detector(directory: Path, names: dict[int, str], winner: str) -> Path:
    """A YOLOv8n with these classes whose scores make ``winner`` the detected class, saved as a .pt."""
    import torch

    yolo = import_yolo()

    architecture = yaml.safe_load(
        (ultralytics_dir() / "cfg" / "models" / "v8" / "yolov8.yaml").read_text(encoding="utf-8")
    )
    architecture["nc"] = len(names)
    directory.mkdir(parents=True, exist_ok=True)
    # The file name picks the "n" scale, as for ultralytics' own yolov8n.yaml.
    config = directory / "yolov8n.yaml"
    config.write_text(yaml.safe_dump(architecture), encoding="utf-8")
    torch.manual_seed(0)
    model = yolo(str(config), task="detect")
    model.model.names = dict(names)
    head = model.model.model[-1]
    winner_id = next(key for key, value in names.items() if value == winner)
    with torch.no_grad():
        for branch in head.cv3:
            branch[-1].bias.fill_(-12.0)
            branch[-1].bias[winner_id] = 12.0
    weights = directory / f"{winner.lower().replace(' ', '-')}.pt"
    model.save(str(weights))
    return weights


@pytest.fixture(scope="module")
def oiv7_jacket_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_detector(tmp_path_factory.mktemp("oiv7"), oiv7_names(), "Jacket")


def photo(name: str) -> bytes:
    data = photo_bytes(name)
    if data is None:
        pytest.skip(f"the package that ships {name} is not installed")
    return data


# -- the label table --------------------------------------------------------------------------------


def test_table_english_names_are_ultralytics_oiv7_classes() -> None:
    table = json.loads(TABLE_PATH.read_text(encoding="utf-8"))["classes"]
    assert [entry["id"] for entry in table] == list(range(601))
    assert {entry["id"]: entry["en"] for entry in table} == oiv7_names()


def test_table_korean_names_are_the_training_vocabulary() -> None:
    if not SHARED_KOREAN_NAMES.is_file():
        pytest.skip(f"{SHARED_KOREAN_NAMES} is not here")
    expected = json.loads(SHARED_KOREAN_NAMES.read_text(encoding="utf-8"))
    # Where the vocabulary holds no usable name, the table records the correction it made; each
    # recorded correction must still be needed (the vocabulary still reads as recorded).
    corrections = json.loads(TABLE_PATH.read_text(encoding="utf-8"))["ko_corrections"]
    for correction in corrections:
        assert expected[str(correction["id"])] == correction["vocabulary"], correction
        expected[str(correction["id"])] = correction["ko"]
    vocabulary = oiv7_vocabulary()
    assert {str(item.id): item.ko for item in vocabulary.classes} == expected
    # No Korean name in the table is a sentence: every name is at most four words of Hangul or Latin
    # letters and digits, without punctuation.
    for item in vocabulary.classes:
        assert re.fullmatch(r"[가-힣A-Za-z0-9]+( [가-힣A-Za-z0-9()]+){0,3}", item.ko), (item.id, item.ko)
    fireplace = vocabulary.by_name("Fireplace")
    assert fireplace is not None and fireplace.ko == "벽난로" and vocabulary.by_name("벽난로") == fireplace


def test_lookup_by_either_language_and_generic_classes() -> None:
    vocabulary = oiv7_vocabulary()
    jacket = vocabulary.by_name("jacket")
    assert jacket is not None and (jacket.ko, jacket.en, jacket.generic) == ("재킷", "Jacket", False)
    assert vocabulary.by_name("재킷") == jacket and vocabulary.by_id(jacket.id) == jacket
    person = vocabulary.by_name("Person")
    assert person is not None and person.generic
    assert [label.ko for label in labels_from_text("기쁨, jacket,  , 무지개 유니콘")] == [
        "기쁨",
        "재킷",
        "무지개 유니콘",
    ]
    assert label_from_text("happy").kind == "emotion" and label_from_text("Tree").en == "Tree"


# -- the runner -------------------------------------------------------------------------------------


def test_importing_ultralytics_leaves_pillow_alone() -> None:
    from PIL import Image

    from inference.images.decode import decode_image
    from inference.images.limits import ImageRejected
    from tests.fakes.images import PLAIN_TEXT

    import_yolo()
    # ultralytics swaps Image.open for a wrapper that tries to install a HEIF plugin on unknown files.
    assert Image.open.__module__ == "PIL.Image"
    with pytest.raises(ImageRejected, match="text, not an image"):
        decode_image(PLAIN_TEXT)


def test_missing_weights_say_where_to_put_them(tmp_path: Path) -> None:
    runner = YoloObjectRunner("cpu", weights="yolov8m-oiv7.pt", weights_dir=tmp_path, download=True)
    # The test run sets YOLO_OFFLINE=1, which Lumi honours: no download is attempted.
    with pytest.raises(ModelUnavailable) as caught:
        runner.load()
    assert str(tmp_path / "yolov8m-oiv7.pt") in caught.value.reason
    assert "faces and emotions only" in caught.value.reason
    explicit = YoloObjectRunner("cpu", weights=tmp_path / "mine.pt")
    with pytest.raises(ModelUnavailable, match="not found"):
        explicit.load()


def test_oiv7_detector_maps_classes_to_korean_and_english(oiv7_jacket_detector: Path) -> None:
    from inference.images.decode import decode_image

    runner = YoloObjectRunner("cpu", weights=oiv7_jacket_detector, image_size=320)
    runner.load()
    try:
        assert len(runner.class_names) == 601 and runner.class_names[0] == "Accordion"
        images = [decode_image(photo(name)).frames[0] for name in ("bus", "coffee")]
        found = runner.predict_batch(images)
    finally:
        runner.close()
    assert len(found) == 2 and all(found)
    jacket = oiv7_vocabulary().by_name("Jacket")
    assert jacket is not None
    for detections in found:
        assert {d.name for d in detections} == {"Jacket"} and {d.class_id for d in detections} == {jacket.id}
        assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
        assert all(d.score > 0.9 and d.box[2] > 0 and d.box[3] > 0 for d in detections)
    label = Perceiver(ModelRegistry("cpu"))._seen(found[0][0]).label
    assert label is not None and (label.ko, label.en, label.kind) == ("재킷", "Jacket", "object")


def test_a_model_with_its_own_classes_is_mapped_by_name(tmp_path: Path) -> None:
    from inference.images.decode import decode_image

    names = {0: "Person", 1: "Bicycle", 2: "Glowing orb"}
    perceiver = Perceiver(ModelRegistry("cpu"))
    image = decode_image(photo("bus")).frames[0]
    results = {}
    for winner in names.values():
        runner = YoloObjectRunner(
            "cpu", weights=build_detector(tmp_path / winner, names, winner), image_size=256
        )
        runner.load()
        detection = runner.predict_batch([image])[0][0]
        runner.close()
        label = perceiver._seen(detection).label
        results[detection.name] = (detection.class_id, label.ko if label else None)
    # Class 1 here is OIV7's "Bicycle" (id 42 there): the name decides, not the id.
    assert results == {"Person": (0, None), "Bicycle": (1, "자전거"), "Glowing orb": (2, None)}
