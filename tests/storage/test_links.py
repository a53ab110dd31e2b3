from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from storage.links import DEFAULT_TTL_S, LinkError, LinkExpired, LinkSigner, LinkTampered

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
