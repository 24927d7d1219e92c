"""Build the dead-letter queue a ``CDCSYNC_DLQ`` target names.

AWS clients come from a boto3 session, so endpoints, region and credentials are boto3's own
configuration (``AWS_ENDPOINT_URL``, profiles, roles; the region as ``cdcsync.aws`` reads it);
nothing here adds settings for them. Each backend is imported when a target names it, and its AWS
clients (and the session, when given as a function) are made when first used, which for a Lambda
function is its first dead letter: a cold start with no letter loads no boto3 (which imports
s3transfer whatever the client). The SQS queue URL is looked up on first use too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cdcsync.aws import OnFirstUse, aws_client, aws_session
from cdcsync.dlq.queue import DeadLetterQueue
from cdcsync.settings import DlqTarget, FileTarget, S3Target, SqsTarget

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def open_dead_letter_queue(
    target: DlqTarget,
    *,
    session: boto3.Session | Callable[[], boto3.Session] | None = None,
    overflow: S3Target | None = None,
    sqs_client: SQSClient | None = None,
    s3_client: S3Client | None = None,
) -> DeadLetterQueue:
    """The queue for ``target``; pre-built clients (tests) take precedence over ``session``.

    ``session`` (or the function giving it, called at the first use of a client; default
    ``aws_session()``) makes the clients. ``overflow`` (SQS only) is where letters over SQS's message
    size limit are stored in full.
    """
    # Imported here, each when its target is named (see the module docstring).
    if isinstance(target, FileTarget):
        from cdcsync.dlq.file import FileDeadLetterQueue  # noqa: PLC0415

        return FileDeadLetterQueue(target.path)

    def client(service: str) -> Any:
        def make() -> Any:
            chosen = session() if callable(session) else session
            return aws_client(chosen or aws_session(), service)  # type: ignore[call-overload]

        return OnFirstUse(make)

    if isinstance(target, S3Target):
        from cdcsync.dlq.s3 import S3DeadLetterQueue  # noqa: PLC0415

        return S3DeadLetterQueue(target, s3_client or client("s3"))
    if isinstance(target, SqsTarget):
        # Pointers are followed only into ``overflow`` (the letter's own object there): a reader
        # of letters another writer overflowed is configured with the same CDCSYNC_DLQ_OVERFLOW.
        from cdcsync.dlq.sqs import SqsDeadLetterQueue  # noqa: PLC0415

        return SqsDeadLetterQueue(
            target,
            sqs_client or client("sqs"),
            overflow=overflow,
            s3_client=s3_client or (client("s3") if overflow is not None else None),
        )
    raise TypeError(f"not a dead-letter queue target: {target!r}")
