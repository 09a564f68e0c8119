"""
Drills: rehearsed restores judged against RTO and RPO.

`run_drill` restores a snapshot (or a seeded sample of it) into a ``drill-<id>/``
namespace, reads everything back, verifies signatures, cleans up and judges;
`run_replica_drill` checks a DR replica in place. `drd.drill.plan` and
`drd.drill.judge` are pure; `drd.drill.report` renders JSON, Markdown and HTML.
"""

from drd.drill.judge import Judgement, Targets, estimate_rto, judge
from drd.drill.plan import DrillPlan, Volume, plan_drill
from drd.drill.report import DrillReport, render_html, render_markdown, write_report
from drd.drill.runner import (
    ReplicaScope,
    check_replica,
    drill_from_settings,
    drill_job,
    record_drill,
    run_drill,
    run_replica_drill,
)

__all__ = [
    "DrillPlan",
    "DrillReport",
    "Judgement",
    "ReplicaScope",
    "Targets",
    "Volume",
    "check_replica",
    "drill_from_settings",
    "drill_job",
    "estimate_rto",
    "judge",
    "plan_drill",
    "record_drill",
    "render_html",
    "render_markdown",
    "run_drill",
    "run_replica_drill",
    "write_report",
]
