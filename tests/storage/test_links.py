from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.links import (
    DEFAULT_TTL_S,
    MAX_TOKEN_CHARS,
    LinkError,
    LinkExpired,
    LinkSecretError,
    LinkSigner,
    LinkTampered,
    load_or_create_secret,
)

ROOT = Path(__file__).resolve().parents[2]

SECRET = "a-test-secret-that-is-long-enough"
KEY = "jobs/0123456789abcdef/model.glb"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def signer() -> LinkSigner:
    return LinkSigner(SECRET)


def test_round_trip_and_url_safety(signer: LinkSigner) -> None:
    token = signer.sign(KEY, now=T0)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert signer.verify(token, now=T0) == KEY
    assert signer.verify(token, now=T0 + timedelta(seconds=DEFAULT_TTL_S - 1)) == KEY
    assert LinkSigner(SECRET.encode()).verify(token, now=T0) == KEY


def test_signing_with_the_real_clock(signer: LinkSigner) -> None:
    assert signer.verify(signer.sign("k")) == "k"


def test_expired_after_ttl(signer: LinkSigner) -> None:
    token = signer.sign(KEY, ttl_s=60, now=T0)
    assert signer.verify(token, now=T0 + timedelta(seconds=59)) == KEY
    with pytest.raises(LinkExpired) as caught:
        signer.verify(token, now=T0 + timedelta(seconds=60))
    assert caught.value.key == KEY
    assert caught.value.expired_at == int(T0.timestamp()) + 60
    with pytest.raises(LinkExpired):
        signer.verify(signer.sign(KEY, now=T0), now=T0 + timedelta(days=8))


def test_every_single_character_change_is_detected(signer: LinkSigner) -> None:
    token = signer.sign(KEY, now=T0)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for position, char in enumerate(token):
        if char == ".":
            continue
        replacement = alphabet[(alphabet.index(char) + 1) % len(alphabet)]
        tampered = token[:position] + replacement + token[position + 1 :]
        with pytest.raises(LinkTampered):
            signer.verify(tampered, now=T0)


def test_key_swapped_into_a_valid_token_is_detected(signer: LinkSigner) -> None:
    genuine_payload, signature = signer.sign(KEY, now=T0).split(".")
    forged_payload = signer.sign("jobs/someone-else/model.glb", now=T0).split(".")[0]
    with pytest.raises(LinkTampered):
        signer.verify(f"{forged_payload}.{signature}", now=T0)
    assert genuine_payload != forged_payload


def test_wrong_secret_is_tampered_not_expired(signer: LinkSigner) -> None:
    token = LinkSigner("another-secret-of-enough-length").sign(KEY, now=T0)
    with pytest.raises(LinkTampered):
        signer.verify(token, now=T0 + timedelta(days=30))


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "====.====", ".", "abc.", ".abc", "a b.c d", "é.é"])
def test_malformed_tokens(signer: LinkSigner, token: str) -> None:
    with pytest.raises(LinkTampered):
        signer.verify(token, now=T0)


def test_errors_share_a_base_class() -> None:
    assert issubclass(LinkTampered, LinkError) and issubclass(LinkExpired, LinkError)


@pytest.mark.parametrize("secret", ["", "short", b"0123456789abcde"])
def test_short_secrets_are_refused(secret: str | bytes) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        LinkSigner(secret)


def test_bad_ttls_and_keys_are_refused(signer: LinkSigner) -> None:
    with pytest.raises(ValueError):
        signer.sign(KEY, ttl_s=0)
    with pytest.raises(ValueError):
        signer.sign("")
    with pytest.raises(ValueError):
        LinkSigner(SECRET, default_ttl_s=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        signer.sign(KEY, now=datetime(2030, 1, 1))


def test_oversize_tokens_are_refused_before_any_work(signer: LinkSigner) -> None:
    with pytest.raises(LinkTampered, match="too long"):
        signer.verify("A" * 100_000 + "." + "B" * 43, now=T0)
    longest_key = "k" * 512  # blobs.MAX_KEY_LENGTH: every genuine token stays under the cap
    assert len(signer.sign(longest_key, now=T0)) < MAX_TOKEN_CHARS


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_generated_secret_is_kept_with_mode_600_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "link_secret"
    first = load_or_create_secret(path)
    assert len(first) >= 32 and load_or_create_secret(path) == first
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["link_secret"]


def test_an_empty_secret_file_is_replaced_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What an older Lumi left behind when the disk filled up during its first start.
    path = tmp_path / "link_secret"
    path.write_text("\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="storage.links"):
        secret = load_or_create_secret(path)
    assert len(secret) >= 32 and path.read_text() == secret
    assert _mode(path) == 0o600
    assert "was empty" in caplog.text


def test_a_short_secret_file_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "link_secret"
    path.write_text("tiny")
    with pytest.raises(LinkSecretError) as caught:
        load_or_create_secret(path)
    message = str(caught.value)
    assert str(path) in message and "4 bytes" in message and "LINK_SECRET" in message
    assert "\n" not in message
    assert path.read_text() == "tiny"


def test_an_unreadable_secret_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "link_secret"
    path.mkdir()  # not a file: reading fails whoever runs the test
    with pytest.raises(LinkSecretError, match=r"cannot read the link secret .*link_secret"):
        load_or_create_secret(path)


_WRITE_WITH_A_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from storage.links import LinkSecretError, load_or_create_secret

# A file-size limit of a few bytes behaves as a full disk for this process: writes fail with EFBIG.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (8, 8))
try:
    load_or_create_secret(Path(sys.argv[1]) / "link_secret")
except LinkSecretError as error:
    print(error)
    raise SystemExit(3)
"""


def test_a_secret_that_cannot_be_written_leaves_no_file_behind(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _WRITE_WITH_A_FULL_DISK, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert "cannot write the link secret" in result.stdout and "File too large" in result.stdout
    # Neither an empty secret (which broke every later start) nor a stray temp file.
    assert list(tmp_path.iterdir()) == []
    assert len(load_or_create_secret(tmp_path / "link_secret")) >= 32
