"""
Failover: pre-flight checks on the standby, the switch, digest-pinned overrides, hooks.

`drd.failover.runner` does the work (`run_failover`, `run_failback`);
`drd.failover.preflight` is the pure judgement of the standby's readiness;
`drd.failover.active` is the recorded failover and the configuration as it applies
while one is in force (`load_active_settings`, the reverse policies).

Nothing is imported here: `drd.failover.active` is read on every `drd replicate`,
`drd drill` and `drd run`, and must not load the runner with it.
"""
