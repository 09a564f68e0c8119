"""Drill reports as JSON, Markdown and HTML: verdict first, self-contained, everything escaped."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from xml.etree import ElementTree

from drd.drill.estimate import DrillTimes, WorstGap
from drd.drill.judge import Targets, estimate_rto, judge, with_worst_rpo
from drd.drill.plan import Volume
from drd.drill.render import render_html, render_markdown, timeline_svg, write_report
from drd.drill.report import DrillReport, Failure, Readback, RepositoryResult
from drd.timeline import Phase

START = dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC)
HOSTILE = '<script>alert("x")</script>|`rm -rf`'


def failed_report() -> DrillReport:
    scope = Volume(1, 3, 4, 6, 10_000)
    report = DrillReport(
        mode="restore",
        id="abc123",
        target="drill",
        source="primary",
        started_at=START,
        finished_at=START + dt.timedelta(seconds=12),
        snapshot="20240501T093000.000000Z",
        snapshot_taken_at=START - dt.timedelta(minutes=20),
        namespace="drill-abc123/",
        trust="release",
        phases=[
            Phase("load snapshot", 0.0, 0.2),
            Phase("restore", 0.2, 6.0, ok=False, detail=HOSTILE),
            Phase("pull and re-hash", 6.2, 3.0),
            Phase("cleanup", 9.2, 1.0),
        ],
        repositories=[
            RepositoryResult(
                f"team/{HOSTILE}", "drill-abc123/team/x", 3, 2, 4, 900, 6, 9100, 1, 1, 0, 1
            )
        ],
        failures=[
            Failure(
                "restore",
                "drill-abc123/team/x",
                "sha256:" + "e" * 64,
                f"DigestMismatch: {HOSTILE}",
                "v1",
            )
        ],
        scope=scope,
        whole=Volume(2, 6, 8, 12, 20_000),
        readback=Readback(4, 900, 6, 9100, 3, 2, 1, 1, 0),
        cleanup={"manifests_deleted": 4, "repositories_with_tags": []},
        notes=[HOSTILE],
    )
    judged = judge(
        rto=estimate_rto(DrillTimes(0.4, 0.1, 6.0, 3.0), scope, report.whole),
        rpo_s=1200.0,
        rpo_method="age of the newest snapshot",
        targets=Targets(rto_s=3600.0, rpo_s=3600.0),
        failures=1,
    )
    gap = WorstGap(5400.0, START - dt.timedelta(hours=3), START - dt.timedelta(hours=1.5), 4)
    report.judgement = with_worst_rpo(judged, gap, "longest gap between successful snapshots")
    return report


def test_html_is_self_contained_and_escapes_everything() -> None:
    """No script, no external reference; hostile names and reasons arrive as text."""
    page = render_html(failed_report())

    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert not re.search(r"\b(src|href)=", page)
    assert "@import" not in page
    assert "url(" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_html_puts_the_verdict_first_then_targets_timeline_failures_repositories() -> None:
    """The order a reader needs: verdict, RTO/RPO, timeline, failures (with digests), table."""
    page = render_html(failed_report())
    body = page.split("<body>", 1)[1]

    positions = [
        body.index("FAILED"),
        body.index("RTO, whole registry"),
        body.index("<svg"),
        body.index("Failures (1)"),
        body.index("sha256:" + "e" * 64),
        body.index("<h2>Repositories</h2>"),
    ]
    assert positions == sorted(positions)
    assert "1 check failed" in body
    assert "<title>FAILED: Restore drill of snapshot" in page


def test_the_timeline_is_valid_svg_with_one_bar_per_phase() -> None:
    """Bars start at each phase's offset; a failed phase is red; labels are escaped."""
    report = failed_report()
    svg = timeline_svg(report.phases, report.duration_s)

    root = ElementTree.fromstring(svg)  # noqa: S314 - our own output, parsed to check its shape
    ns = "{http://www.w3.org/2000/svg}"
    bars = root.findall(f"{ns}rect")
    assert len(bars) == 4
    xs = [float(b.get("x", "0")) for b in bars]
    assert xs == sorted(xs)
    assert [b.get("fill") for b in bars].count("#cf222e") == 1
    titles = [b.find(f"{ns}title") for b in bars]
    assert titles[1] is not None
    assert HOSTILE in (titles[1].text or "")


def test_markdown_escapes_table_cells() -> None:
    """A pipe in a name cannot break a table row."""
    text = render_markdown(failed_report())

    assert text.startswith("# Restore drill of snapshot")
    assert "**FAILED**" in text
    row = next(line for line in text.splitlines() if line.startswith("| restore | drill-abc123"))
    assert row.count(" | ") == 4
    assert "\\|" in row
    assert "<script>" not in text


def test_reports_are_written_as_json_markdown_and_html(tmp_path: Path) -> None:
    """Three files named after the drill's start and id; the JSON carries the verdict."""
    report = failed_report()

    paths = write_report(report, tmp_path / "reports")

    assert sorted(paths) == ["html", "json", "md"]
    assert {p.name for p in paths.values()} == {
        f"drill-20240501T093000Z-abc123.{ext}" for ext in ("json", "md", "html")
    }
    document = json.loads(paths["json"].read_text())
    assert (document["verdict"], document["ok"]) == ("FAILED", False)
    rto, rpo = document["judgement"]["rto"], document["judgement"]["rpo"]
    assert (rto["estimate_s"], rto["fixed_s"], rto["startup_s"]) == (18.5, 0.5, 0.4)
    assert rpo["measured_s"] == 1200.0
    assert (rpo["worst_s"], rpo["worst_from"]) == (5400.0, "2024-05-01T06:30:00.000000Z")
    assert any("worst-case RPO 1h30m exceeds" in r for r in document["judgement"]["reasons"])
    assert (rpo["met"], rpo["worst_met"]) == (False, False)
    md = paths["md"].read_text()
    assert "| RPO | 1h00m | 20m00s | yes |" in md
    assert "| RPO, worst case in the window | 1h00m | 1h30m | no |" in md
    assert "RPO, worst case in the window" in paths["html"].read_text()
    assert document["failures"][0]["digest"] == "sha256:" + "e" * 64
    assert not list((tmp_path / "reports").glob(".*"))
