"""Field merge rules, dry-run merge plans, one-transaction merges that re-link everything, and undo.

Plain library code: rules and plans read nothing; apply, undo, skips write through ``crm``.
"""

from merge_rules.apply import MergeResult, apply_batch, apply_plan
from merge_rules.errors import MergeError, PermissionDenied, StalePlanError, UndoConflict, UnresolvedConflicts
from merge_rules.history import merge_history
from merge_rules.leads import link_lead_to_client
from merge_rules.plan import MergePlan, build_plan, plan_groups
from merge_rules.settings import MergeSettings, SettingsError
from merge_rules.skips import load_skips, skip_pair, skip_record
from merge_rules.undo import UndoResult, undo_batch, undo_merge

__all__ = [
    "MergeError", "MergePlan", "MergeResult", "MergeSettings", "PermissionDenied", "SettingsError",
    "StalePlanError", "UndoConflict", "UndoResult", "UnresolvedConflicts", "apply_batch", "apply_plan",
    "build_plan", "link_lead_to_client", "load_skips", "merge_history", "plan_groups", "skip_pair",
    "skip_record", "undo_batch", "undo_merge",
]
