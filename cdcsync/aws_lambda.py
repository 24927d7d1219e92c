"""The Lambda handlers' contract paths: ``cdcsync.aws_lambda.handler`` (the stream), and the backfill
state machine's ``export_check_handler``, ``export_handler`` and ``verify_handler``.

The backfill handlers are imported on first use (PEP 562 ``__getattr__``, which Lambda's handler
lookup goes through), so the stream handler's cold start imports none of them.

Importing it is most of a cold start. What the import makes (modules, classes, functions) lives as
long as the container, so the cyclic garbage collector is paused meanwhile (a full collection in the
middle of it walks every object made so far and frees nothing) and those objects are then moved to
its permanent generation (``gc.freeze``), where the collections of warm invocations skip them too.
"""

import gc
from typing import Any

_collecting = gc.isenabled()
gc.disable()
try:
    from cdcsync.entrypoints.aws_lambda import handler
finally:
    gc.freeze()
    if _collecting:
        gc.enable()

_BACKFILL = ("export_check_handler", "export_handler", "verify_handler")

__all__ = ["handler", *_BACKFILL]  # noqa: PLE0604 - names resolved by __getattr__


def __getattr__(name: str) -> Any:
    if name in _BACKFILL:
        from cdcsync.entrypoints import export_lambda  # noqa: PLC0415 - only the backfill functions need it

        return getattr(export_lambda, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
