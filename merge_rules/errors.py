"""What can stop a merge or an undo, each with a message a person can act on."""

from __future__ import annotations


class MergeError(Exception):
    """A merge or undo that cannot go ahead; the message says why and what to do."""


class StalePlanError(MergeError):
    """The records changed since the plan was made; ``changes`` lists what changed."""

    def __init__(self, message: str, changes: list[str] | None = None):
        super().__init__(message)
        self.changes = list(changes or [])


class PermissionDenied(MergeError):
    """The user may not merge (or undo) these records."""


class UnresolvedConflicts(MergeError):
    """The plan has conflicts nobody chose a value for (conflict_policy 'ask')."""

    def __init__(self, message: str, fields: list[str]):
        super().__init__(message)
        self.fields = fields


class NotDuplicates(MergeError):
    """Records of the group were marked "not duplicates" (a skip) after the group was proposed."""


class UndoConflict(MergeError):
    """Rows the merge wrote have changed since; ``changes`` lists them. Undo with force to overwrite,
    unless ``later`` names merges still applied that touched them: those must be undone first."""

    def __init__(self, message: str, changes: list[str] | None = None, later: list[int] | None = None):
        super().__init__(message)
        self.changes = list(changes or [])
        self.later = list(later or [])
