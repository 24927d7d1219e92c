"""The composition root: settings become clients, the bulk writer and the pipeline here, and only here.

Every entry point (the Lambda handler, the worker, backfill, verify, ``dlq redrive``, ``indices
apply``) builds one ``Services`` from its settings and hands each command what it needs, so a
change to how writes are made (a client option, a writer that writes to two indices) reaches every
writer at once. Each part is built on first use and kept: a command that never writes never builds
an OpenSearch client, and nothing is contacted while building (``Target`` asks the cluster lazily).
The boto3 session too is made on first use, and the item reader makes its DynamoDB client on its
first read (only KEYS_ONLY records and re-reads need one): a Lambda function syncing a stream with
images into OpenSearch, with a ``file://`` dead-letter queue, never loads boto3 (its cold start).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from opensearchpy import OpenSearch

from cdcsync.aws import OnFirstUse, aws_client, aws_session
from cdcsync.dlq.open import open_dead_letter_queue
from cdcsync.dlq.queue import DeadLetterQueue
from cdcsync.mapping.compiled import MappingSet
from cdcsync.mapping.loader import load_mappings
from cdcsync.metrics import Metrics, NullMetrics
from cdcsync.pipeline import Pipeline
from cdcsync.settings import Settings
from cdcsync.sink.bulk import BulkWriter
from cdcsync.sink.client import build_client
from cdcsync.sink.target import Target
from cdcsync.source.items import ItemReader

if TYPE_CHECKING:
    import boto3

    from cdcsync.checkpoint import LeaseStore


class Services:
    """What the entry points share, built from ``settings`` on first use (one of each per process)."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: boto3.Session | None = None,
        metrics: Metrics | None = None,
        mappings: MappingSet | None = None,
    ) -> None:
        self.settings = settings
        if session is not None:
            self.__dict__["session"] = session
        self.metrics: Metrics = metrics or NullMetrics()
        if mappings is not None:  # given (rebuild's verify of the new index), not loaded
            self.__dict__["mappings"] = mappings

    @cached_property
    def session(self) -> boto3.Session:
        return aws_session()

    @cached_property
    def mappings(self) -> MappingSet:
        return load_mappings(self.settings.mappings)

    @cached_property
    def client(self) -> OpenSearch:
        # Only SigV4 signs with the session's credentials.
        sigv4 = self.settings.opensearch_auth == "sigv4"
        return build_client(self.settings, session=self.session if sigv4 else None)

    @cached_property
    def target(self) -> Target:
        return Target(self.settings, self.client)

    @cached_property
    def writer(self) -> BulkWriter:
        return BulkWriter.from_settings(self.settings, self.client, self.metrics)

    @cached_property
    def dynamodb(self) -> Any:
        return aws_client(self.session, "dynamodb")

    @cached_property
    def items(self) -> ItemReader:
        return ItemReader(OnFirstUse(lambda: self.dynamodb))

    @cached_property
    def dead_letters(self) -> DeadLetterQueue:
        settings = self.settings
        # The session only when a letter is sent (the queue's client is made then).
        return open_dead_letter_queue(
            settings.dlq_target, session=lambda: self.session, overflow=settings.dlq_overflow_target
        )

    @cached_property
    def pipeline(self) -> Pipeline:
        return Pipeline(
            mappings=self.mappings,
            writer=self.writer,
            dead_letters=self.dead_letters,
            metrics=self.metrics,
            items=self.items,
            dead_letter_content=self.settings.dlq_content,
        )

    def lease_store(self, worker_id: str, *, create: bool = True) -> LeaseStore:
        """The checkpoint store (``CDCSYNC_CHECKPOINTS``) as ``worker_id``; ``create=False``: a
        ``dynamodb://`` lease table that does not exist is a ``ConfigError`` (read-only commands)."""
        from cdcsync.checkpoint.open import open_lease_store  # noqa: PLC0415 - not in the Lambda handler

        settings = self.settings
        return open_lease_store(
            settings.checkpoint_target,
            worker_id=worker_id,
            session=self.session,
            lease_seconds=settings.lease_seconds,
            create=create,
        )
