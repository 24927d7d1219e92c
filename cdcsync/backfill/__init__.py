"""Backfill: load the items already in a table (parallel scan or S3 export) through the stream pipeline.

``run_backfill`` (run.py) orchestrates; ``pages.py`` writes and checkpoints one page; ``scan.py``
reads segments under a shared capacity limit; ``export.py`` reads DynamoDB exports to S3;
``progress.py`` shows how far it got. ``--run-id``: ``shared.py`` joins a run any number of
processes share, whose units ``units.py`` claims, and ``status.py`` reports on it.
"""

from cdcsync.backfill.pages import BackfillReport, BackfillStoppedError
from cdcsync.backfill.run import run_backfill

__all__ = ["BackfillReport", "BackfillStoppedError", "run_backfill"]
