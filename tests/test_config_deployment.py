"""LUMI_MODE, LUMI_ROLES and the shard plan: embedded by default, distributed only with what it needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings, SettingsError, load_settings

DISTRIBUTED = {
    "LUMI_MODE": "distributed",
    "DATABASE_URL": "postgresql+asyncpg://lumi@db.internal:5432/lumi",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "LUMI_SHARED_DATA_DIR": "true",
    "LINK_SECRET": "cluster-link-secret-0123456789",
}


@pytest.fixture(autouse=True)
def _no_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("LUMI_MODE", "LUMI_ROLES", "REDIS_URL", "BLOB_STORE_URL", "LUMI_SHARED_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name in ("DATABASE_URL", "LINK_SECRET", "DISCORD_SHARD_COUNT", "DISCORD_SHARD_IDS"):
        monkeypatch.delenv(name, raising=False)
    for name in (
        "AZURE_STORAGE_CONNECTION_STRING",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def settings_with(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Settings:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def refusal(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    with pytest.raises(SettingsError) as caught:
        settings_with(monkeypatch, **variables)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_default_is_embedded_with_every_role_and_no_shard_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.lumi_mode == "embedded"
    assert settings.lumi_roles == ["gateway", "worker", "web"]
    assert all(settings.has_role(role) for role in ("gateway", "worker", "web"))
    assert settings.shard_ids == []


def test_distributed_mode_with_everything_it_needs_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with(monkeypatch, **DISTRIBUTED, LUMI_ROLES=" Web , worker ")
    assert settings.lumi_mode == "distributed"
    # Canonical order whatever the order written.
    assert settings.lumi_roles == ["worker", "web"]
    assert not settings.has_role("gateway")


def test_distributed_mode_names_everything_missing_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(monkeypatch, LUMI_MODE="distributed")
    for name in ("DATABASE_URL", "REDIS_URL", "BLOB_STORE_URL", "LUMI_SHARED_DATA_DIR=true", "LINK_SECRET"):
        assert name in message
    assert message.startswith("invalid configuration: LUMI_MODE=distributed needs DATABASE_URL")


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL", "LINK_SECRET", "LUMI_SHARED_DATA_DIR"])
def test_each_missing_piece_is_named_alone(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    variables = {name: value for name, value in DISTRIBUTED.items() if name != missing}
    message = refusal(monkeypatch, **variables)
    named = [
        name for name in ("DATABASE_URL", "REDIS_URL", "LINK_SECRET", "BLOB_STORE_URL") if name in message
    ]
    assert named == ["BLOB_STORE_URL" if missing == "LUMI_SHARED_DATA_DIR" else missing]


def test_sqlite_is_refused_in_distributed_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    message = refusal(monkeypatch, **{**DISTRIBUTED, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db"})
    assert "DATABASE_URL (postgresql+asyncpg://" in message


AZURE_CONNECTION = (
    "DefaultEndpointsProtocol=https;AccountName=lumifiles;AccountKey=a2V5LWZvci10ZXN0cw==;"
    "EndpointSuffix=core.windows.net"
)


def test_a_remote_blob_store_stands_in_for_a_shared_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = {name: value for name, value in DISTRIBUTED.items() if name != "LUMI_SHARED_DATA_DIR"}
    settings = settings_with(
        monkeypatch,
        **variables,
        BLOB_STORE_URL="azure://lumi-files",
        AZURE_STORAGE_CONNECTION_STRING=AZURE_CONNECTION,
    )
    assert settings.blob_store_settings().azure_connection_string == AZURE_CONNECTION
    assert "AccountKey" not in repr(settings)  # a secret, never printed
    s3 = settings_with(
        monkeypatch, **variables, BLOB_STORE_URL="s3://lumi-files/prod", AZURE_STORAGE_CONNECTION_STRING=""
    )
    assert s3.blob_store_settings().url == "s3://lumi-files/prod"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"BLOB_STORE_URL": "ftp://files.internal/lumi"},
            "invalid configuration: BLOB_STORE_URL: 'ftp://files.internal/lumi': use azure://<container> or "
            "s3://<bucket>[/<prefix>], or leave it empty for files under DATA_DIR/blobs",
        ),
        ({"BLOB_STORE_URL": "azure://Lumi_Files"}, "'Lumi_Files' is not an Azure container name"),
        ({"BLOB_STORE_URL": "azure://lumi/files"}, "an Azure URL names only the container"),
        (
            {"BLOB_STORE_URL": "azure://lumi-files"},
            "BLOB_STORE_URL=azure://lumi-files needs AZURE_STORAGE_CONNECTION_STRING",
        ),
        (
            {
                "BLOB_STORE_URL": "azure://lumi-files",
                "AZURE_STORAGE_CONNECTION_STRING": "AccountName=lumifiles",
            },
            "AZURE_STORAGE_CONNECTION_STRING: the connection string has neither AccountKey nor "
            "SharedAccessSignature",
        ),
        ({"BLOB_STORE_URL": "s3://x"}, "'x' is not an S3 bucket name"),
        ({"BLOB_STORE_URL": "s3://lumi-files/a b"}, "prefix 'a b'"),
        (
            {"BLOB_STORE_URL": "s3://lumi-files", "S3_ACCESS_KEY_ID": "AKIA0000"},
            "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY: set both, or neither",
        ),
        (
            {"BLOB_STORE_URL": "s3://lumi-files", "S3_ENDPOINT_URL": "minio:9000"},
            "S3_ENDPOINT_URL: 'minio:9000'",
        ),
    ],
)
@pytest.mark.parametrize("mode", ["embedded", "distributed"])
def test_a_bad_blob_store_setting_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, mode: str, variables: dict[str, str], expected: str
) -> None:
    message = refusal(monkeypatch, **{**DISTRIBUTED, "LUMI_MODE": mode, **variables})
    assert expected in message


def test_roles_other_than_all_need_distributed_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(monkeypatch, LUMI_ROLES="web")
    assert message == (
        "invalid configuration: LUMI_ROLES=web needs LUMI_MODE=distributed (an embedded Lumi runs every role)"
    )


@pytest.mark.parametrize(
    ("roles", "expected"),
    [("gateway,printer", "LUMI_ROLES"), ("web,web", "names a role twice")],
)
def test_bad_roles_are_refused(monkeypatch: pytest.MonkeyPatch, roles: str, expected: str) -> None:
    assert expected in refusal(monkeypatch, **DISTRIBUTED, LUMI_ROLES=roles)


def test_an_empty_role_list_means_every_role(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_with(monkeypatch, LUMI_ROLES="").lumi_roles == ["gateway", "worker", "web"]


def test_a_gateway_takes_its_shard_from_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with(monkeypatch, **DISTRIBUTED, DISCORD_SHARD_COUNT="4", DISCORD_SHARD_IDS="3")
    assert settings.discord_shard_count == 4
    assert settings.shard_ids == [3]
    assert settings_with(monkeypatch, DISCORD_SHARD_COUNT="1", DISCORD_SHARD_IDS="").shard_ids == [0]


def test_a_gateway_may_run_several_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    several = settings_with(monkeypatch, **DISTRIBUTED, DISCORD_SHARD_COUNT="4", DISCORD_SHARD_IDS="1,3")
    assert several.shard_ids == [1, 3]
    every = settings_with(monkeypatch, **DISTRIBUTED, DISCORD_SHARD_COUNT="3", DISCORD_SHARD_IDS="")
    assert every.shard_ids == [0, 1, 2]


@pytest.mark.parametrize(
    ("count", "ids", "expected"),
    [
        ("2", "2", "DISCORD_SHARD_IDS: shard 2 is outside 0..1 (DISCORD_SHARD_COUNT=2)"),
        ("4", "1,1", "DISCORD_SHARD_IDS: shard 1 is listed twice"),
        ("", "0", "DISCORD_SHARD_IDS: needs DISCORD_SHARD_COUNT"),
        ("4", "one", "DISCORD_SHARD_IDS.0"),
        ("0", "", "DISCORD_SHARD_COUNT"),
    ],
)
def test_bad_shard_plans_are_refused(
    monkeypatch: pytest.MonkeyPatch, count: str, ids: str, expected: str
) -> None:
    message = refusal(monkeypatch, **DISTRIBUTED, DISCORD_SHARD_COUNT=count, DISCORD_SHARD_IDS=ids)
    assert expected in message
