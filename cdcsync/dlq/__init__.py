"""The dead-letter queue: records that cannot succeed are stored here with the reason, never dropped.

``DeadLetter`` is the one entry shape; ``open_dead_letter_queue(target)`` gives the ``file://``,
``sqs://`` or ``s3://`` backend behind the ``DeadLetterQueue`` protocol (send, read, remove).

The names below are imported from their modules on first use (PEP 562 ``__getattr__``): importing
``cdcsync.dlq.queue`` (what the pipeline needs) does not build the pydantic letter model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cdcsync.dlq.letter import DeadLetter, DeadLetterError
    from cdcsync.dlq.open import open_dead_letter_queue
    from cdcsync.dlq.queue import DeadLetterQueue, DeadLetterQueueError, StoredLetter, json_safe

_MODULES = {
    "DeadLetter": "cdcsync.dlq.letter",
    "DeadLetterError": "cdcsync.dlq.letter",
    "DeadLetterQueue": "cdcsync.dlq.queue",
    "DeadLetterQueueError": "cdcsync.dlq.queue",
    "StoredLetter": "cdcsync.dlq.queue",
    "json_safe": "cdcsync.dlq.queue",
    "open_dead_letter_queue": "cdcsync.dlq.open",
}

__all__ = [
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterQueue",
    "DeadLetterQueueError",
    "StoredLetter",
    "json_safe",
    "open_dead_letter_queue",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
