"""Blob storage emulators the tests start themselves: Azurite (Azure Blob) and moto's server (S3).

Azurite is Microsoft's emulator, installed from npm by `make install-dev` into tests/emulators; moto's
server comes with the `moto[server]` dev dependency. Each runs once per test session on a free port of
127.0.0.1, with nothing written to disk, and is stopped at the end. A missing emulator skips the tests
that need it, unless LUMI_REQUIRE_AZURITE=1 (CI), where a missing Azurite fails them.

Azurite checks SAS signatures and expiry like the service; moto accepts any signature, so tests of
tampered or expired links run against Azurite only.

Re-export the fixtures from a folder's conftest.py:

    from tests.fakes.blob_emulators import azurite, moto_s3
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from storage.blob_stores.s3 import S3BlobStore

REQUIRE_AZURITE_ENV = "LUMI_REQUIRE_AZURITE"
EMULATORS_DIR = Path(__file__).resolve().parents[1] / "emulators"
AZURITE_BLOB = EMULATORS_DIR / "node_modules" / ".bin" / "azurite-blob"
START_TIMEOUT_S = 60.0

# Azurite's documented development account: public, the same in every installation.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class Azurite:
    blob_endpoint: str
    process: subprocess.Popen[bytes]

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    process: subprocess.Popen[bytes]
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    region: str = "us-east-1"

    def store(self, bucket: str, prefix: str) -> S3BlobStore:
        """Lumi's S3 blob store on ``bucket`` of this server, its keys under ``prefix``."""
        from storage.blob_stores.s3 import S3BlobStore  # aiobotocore: only for the tests that use S3

        return S3BlobStore(
            bucket,
            prefix,
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {process.returncode} before answering (see its output above)"
            )
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is listening
        except OSError:
            time.sleep(0.2)
    stop_process(process)
    raise RuntimeError(f"{name} did not answer {url} within {START_TIMEOUT_S:.0f} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def azurite_required() -> bool:
    return os.environ.get(REQUIRE_AZURITE_ENV, "").strip() == "1"


def _azurite_missing(reason: str) -> NoReturn:
    if azurite_required():
        pytest.fail(f"{REQUIRE_AZURITE_ENV}=1 but Azurite cannot run: {reason}", pytrace=False)
    pytest.skip(f"Azurite cannot run ({reason}); `make install-dev` installs it into {EMULATORS_DIR}")


def start_azurite(port: int | None = None) -> Azurite:
    """Start Azurite's blob service on `port` (a free one by default) and wait until it answers."""
    if not AZURITE_BLOB.exists():
        _azurite_missing(f"{AZURITE_BLOB} is not installed")
    if shutil.which("node") is None:
        _azurite_missing("node is not on PATH")
    port = port or free_port()
    process = subprocess.Popen(
        [
            str(AZURITE_BLOB),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    _wait_until_answering(f"{endpoint}?comp=list", process, "Azurite")
    return Azurite(endpoint, process)


def start_moto(port: int | None = None) -> MotoS3:
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        # One log line per request: never piped, where a full pipe would stall the server.
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    _wait_until_answering(f"{endpoint}/moto-api/", process, "moto")
    return MotoS3(endpoint, process)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    emulator = start_azurite()
    try:
        yield emulator
    finally:
        stop_process(emulator.process)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    pytest.importorskip("moto.server", reason="moto[server] is a dev dependency: pip install -e '.[dev]'")
    emulator = start_moto()
    try:
        yield emulator
    finally:
        stop_process(emulator.process)
