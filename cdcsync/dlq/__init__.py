"""The dead-letter queue: records that cannot succeed are stored here with the reason, never dropped.

``DeadLetter`` is the one entry shape; ``open_dead_letter_queue(target)`` gives the ``file://``,
``sqs://`` or ``s3://`` backend behind the ``DeadLetterQueue`` protocol (send, read, remove).
"""

from cdcsync.dlq.letter import (
    DeadLetter,
    DeadLetterError,
    DeadLetterQueue,
    DeadLetterQueueError,
    StoredLetter,
    json_safe,
)
from cdcsync.dlq.open import open_dead_letter_queue

__all__ = [
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterQueue",
    "DeadLetterQueueError",
    "StoredLetter",
    "json_safe",
    "open_dead_letter_queue",
]
