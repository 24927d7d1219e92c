"""Pure planning: a change record plus the mappings become index/delete actions, fetches or skips."""

from cdcsync.plan.actions import Action, DeleteAction, FetchItem, IndexAction, Rejected, Skip, Step
from cdcsync.plan.planner import plan_fetched, plan_record

__all__ = [
    "Action",
    "DeleteAction",
    "FetchItem",
    "IndexAction",
    "Rejected",
    "Skip",
    "Step",
    "plan_fetched",
    "plan_record",
]
