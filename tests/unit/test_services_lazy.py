"""The composition root builds AWS parts only when a command uses them (the Lambda cold start)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest

from cdcsync.aws import OnFirstUse
from cdcsync.metrics import NullMetrics
from cdcsync.services import Services
from cdcsync.settings import load_settings


@pytest.fixture
def settings_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.upper().startswith("CDCSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "users.yaml").write_text("table: Users\nindex: users\n")
    return tmp_path


def test_services_pipeline_built_makes_no_session_and_no_dynamodb_client(settings_dir: Path) -> None:
    # GIVEN a composition root with a file dead-letter queue and no session handed in
    settings = load_settings(mappings=str(settings_dir), dlq=f"file://{settings_dir}/dlq")
    services = Services(settings, metrics=NullMetrics())

    # WHEN the pipeline is built (what the Lambda handler does on its first event)
    pipeline = services.pipeline

    # THEN neither a boto3 session nor a DynamoDB client was made
    assert "session" not in services.__dict__
    assert "dynamodb" not in services.__dict__
    assert pipeline.items is services.items
    reader = services.items.dynamodb
    assert isinstance(reader, OnFirstUse)
    assert not reader.made


def test_services_item_reader_first_read_makes_dynamodb_client_once(settings_dir: Path) -> None:
    # GIVEN a composition root whose session is handed in (fake credentials, a closed endpoint)
    settings = load_settings(mappings=str(settings_dir), dlq=f"file://{settings_dir}/dlq")
    session = boto3.Session(region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")  # noqa: S106 - fake
    services = Services(settings, session=session, metrics=NullMetrics())

    # WHEN the item reader's client is first used
    method = services.items.dynamodb.batch_get_item

    # THEN the composition root's one DynamoDB client answers it, made once
    assert services.session is session
    assert method.__self__ is services.dynamodb
    assert services.items.dynamodb.made
    assert services.items.dynamodb.batch_get_item.__self__ is services.dynamodb


def test_on_first_use_makes_the_client_at_first_lookup_only() -> None:
    # GIVEN a factory that counts its calls
    made: list[Any] = []

    class Client:
        def read(self) -> str:
            return "read"

    def make() -> Client:
        made.append(Client())
        return made[-1]

    lazy = OnFirstUse(make)

    # WHEN nothing is looked up, THEN nothing is made; WHEN methods are used, THEN one client serves them
    assert made == []
    assert lazy.read() == "read"
    assert lazy.read() == "read"
    assert len(made) == 1
