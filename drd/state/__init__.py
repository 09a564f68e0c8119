"""
Run history and leases' bookkeeping: the interface (`base`) and the SQLite backend
(`sqlite`). The names most callers need are re-exported here, so ``from drd.state
import State`` names the configured default backend in one place.
"""

from drd.state.base import JobRecord, RunRecord, StateStore, SyncRecord
from drd.state.sqlite import DB_NAME, State, read_status

__all__ = [
    "DB_NAME",
    "JobRecord",
    "RunRecord",
    "State",
    "StateStore",
    "SyncRecord",
    "read_status",
]
