"""
The long-running daemon behind ``drd run``.

- `drd.daemon.service`: `run_daemon`, the process: signals, state, generations of jobs.
- `drd.daemon.scheduler`: `Scheduler`, `Job`, `Trigger`: intervals, coalesced triggers, drain.
- `drd.daemon.http`: ``/metrics``, ``/healthz``, ``/readyz`` and the push ``/webhook``.
- `drd.daemon.sdnotify`: systemd's READY/STOPPING/WATCHDOG notifications.
"""
