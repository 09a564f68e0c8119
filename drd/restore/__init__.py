"""Restore: recreate repositories and tags from a snapshot, children before parents."""

from drd.restore.plan import RestorePlan, Selection, plan_restore
from drd.restore.runner import RestoreReport, restore_snapshot

__all__ = ["RestorePlan", "RestoreReport", "Selection", "plan_restore", "restore_snapshot"]
