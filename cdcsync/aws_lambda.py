"""The Lambda handler's contract path: ``cdcsync.aws_lambda.handler``.

Importing it is most of a cold start. What the import makes (modules, classes, functions) lives as
long as the container, so the cyclic garbage collector is paused meanwhile (a full collection in the
middle of it walks every object made so far and frees nothing) and those objects are then moved to
its permanent generation (``gc.freeze``), where the collections of warm invocations skip them too.
"""

import gc

_collecting = gc.isenabled()
gc.disable()
try:
    from cdcsync.entrypoints.aws_lambda import handler
finally:
    gc.freeze()
    if _collecting:
        gc.enable()

__all__ = ["handler"]
