"""Build the dead-letter queue a ``CDCSYNC_DLQ`` target names.

AWS clients come from a boto3 session, so endpoints, region and credentials are boto3's own
configuration (``AWS_ENDPOINT_URL``, profiles, roles; the region as ``cdcsync.aws`` reads it);
nothing here adds settings for them. Creating a client does no I/O: the SQS queue URL is looked
up on first use. Each backend (and boto3 behind it) is imported when a target names it: the file
queue of a Lambda function loads no AWS client code (boto3's S3 support alone pulls in s3transfer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdcsync.aws import aws_client, aws_session
from cdcsync.dlq.letter import DeadLetterQueue
from cdcsync.settings import DlqTarget, FileTarget, S3Target, SqsTarget

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def open_dead_letter_queue(
    target: DlqTarget,
    *,
    session: boto3.Session | None = None,
    overflow: S3Target | None = None,
    sqs_client: SQSClient | None = None,
    s3_client: S3Client | None = None,
) -> DeadLetterQueue:
    """The queue for ``target``; pre-built clients (tests) take precedence over ``session``.

    ``overflow`` (SQS only) is where letters over SQS's message size limit are stored in full.
    """
    # Imported here, each when its target is named (see the module docstring).
    if isinstance(target, FileTarget):
        from cdcsync.dlq.file import FileDeadLetterQueue  # noqa: PLC0415

        return FileDeadLetterQueue(target.path)
    session = session or aws_session()
    if isinstance(target, S3Target):
        from cdcsync.dlq.s3 import S3DeadLetterQueue  # noqa: PLC0415

        return S3DeadLetterQueue(target, s3_client or aws_client(session, "s3"))
    if isinstance(target, SqsTarget):
        # Pointers are followed only into ``overflow`` (the letter's own object there): a reader
        # of letters another writer overflowed is configured with the same CDCSYNC_DLQ_OVERFLOW.
        from cdcsync.dlq.sqs import SqsDeadLetterQueue  # noqa: PLC0415

        return SqsDeadLetterQueue(
            target,
            sqs_client or aws_client(session, "sqs"),
            overflow=overflow,
            s3_client=s3_client or (aws_client(session, "s3") if overflow is not None else None),
        )
    raise TypeError(f"not a dead-letter queue target: {target!r}")
