"""
Drills: rehearsed restores judged against RTO and RPO.

`run_drill` restores a snapshot (or a seeded sample of it) into a ``drill-<id>/``
namespace, reads everything back, verifies signatures, cleans up and judges;
`run_replica_drill` checks a DR replica in place. `drd.drill.plan` and
`drd.drill.judge` are pure; `drd.drill.report` renders JSON, Markdown and HTML.
"""
