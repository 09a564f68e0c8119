"""
Failover: pre-flight checks on the standby, the switch, digest-pinned overrides, hooks.

`drd.failover.runner` does the switch (`switch_over`, from plain values);
`drd.failover.preflight` is the pure judgement of the standby's readiness;
`drd.failover.active` is the recorded failover document. `drd.app.failover` checks a
request against the configuration and `drd.app.active` applies the failover in force
to the configuration (`load_active_settings`, the reverse policies).
"""
