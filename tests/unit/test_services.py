"""The composition root: one of each part per ``Services``, shared by everything that writes."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from cdcsync.metrics import NullMetrics
from cdcsync.services import Services
from cdcsync.settings import load_settings


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Services:
    for name in list(os.environ):
        if name.upper().startswith("CDCSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "users.yaml").write_text("table: Users\nindex: users\n")
    settings = load_settings(mappings=str(tmp_path), dlq=f"file://{tmp_path}/dlq")
    session = boto3.Session(region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")  # noqa: S106 - fake
    return Services(settings, session=session, metrics=NullMetrics())


def test_services_parts_built_once_and_shared_by_pipeline_and_target(services: Services) -> None:
    # GIVEN one composition root
    # WHEN its pipeline and target are asked for (nothing is contacted while building)
    pipeline = services.pipeline

    # THEN the pipeline writes through the one writer, over the one client the target checks
    assert pipeline.writer is services.writer
    assert services.writer.client is services.client
    assert services.target.client is services.client
    assert pipeline.mappings is services.mappings
    assert pipeline.items is services.items
    assert pipeline.dead_letters is services.dead_letters
    assert pipeline.metrics is services.metrics
    assert services.pipeline is pipeline
    assert services.mappings.tables == ("Users",)
