"""
The HTML drill report in a real browser: headless Chromium (Debian's ``chromium``,
which scripts/test.sh installs) renders a failed drill's report without console
errors, draws the timeline chart, and shows the failures without scrolling. The
screenshot is kept beside the report in the test's temporary folder (its path is
printed).

Layout is measured by a copy of the page with a probe script appended (the report
itself has none); the console is read from Chromium's own log (``--enable-logging``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from drd.drill.render import write_report
from tests.drill.test_report import failed_report

# A laptop screen: the report must say what failed within it.
WINDOW = (1280, 800)
CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?\]? ?(.*)")

PROBE = """<script>
(() => {
  const heading = [...document.querySelectorAll("section > h2")]
    .find((h) => h.textContent.startsWith("Failures"));
  const failures = heading.parentElement.getBoundingClientRect();
  const svg = document.querySelector("section svg");
  const chart = svg.getBoundingClientRect();
  const bars = [...svg.querySelectorAll("rect")].filter((r) => r.getBBox().width > 0);
  const out = {
    fold: window.innerHeight,
    failures_top: failures.top,
    failures_bottom: failures.bottom,
    chart: [chart.width, chart.height],
    bars: bars.length,
  };
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def chromium() -> str:
    """The browser's path; skipped where it is not installed (CI installs it)."""
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/test.sh installs it")
        pytest.skip("chromium is not installed (scripts/test.sh installs it)")
    return found


def run_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on *page* with a fresh profile, no network of its own."""
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the console (errors included), from Chromium's log."""
    return [m.group(1) for line in stderr.splitlines() if (m := CONSOLE.search(line))]


def test_the_console_check_sees_a_page_error(tmp_path: Path) -> None:
    """The check below can fail: a page that throws shows up in the console messages."""
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><title>x</title><script>throw new Error('boom')</script>")
    result = run_chromium(page, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr
    assert any("boom" in m for m in console_messages(result.stderr)), result.stderr


def test_a_failed_drill_report_renders_cleanly_with_failures_above_the_fold(
    tmp_path: Path,
) -> None:
    """No console message, the timeline drawn bar by bar, the failures on the first screen."""
    paths = write_report(failed_report(), tmp_path / "reports")
    report = paths["html"]

    shot = tmp_path / "reports" / "drill-report.png"
    rendered = run_chromium(report, tmp_path / "profile", f"--screenshot={shot}")
    print(f"drill report screenshot: {shot}")

    assert rendered.returncode == 0, rendered.stderr
    assert console_messages(rendered.stderr) == [], rendered.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    probe = tmp_path / "reports" / "probe.html"
    probe.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dumped = run_chromium(probe, tmp_path / "profile-probe", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr
    found = re.search(r'<pre id="probe">([^<]*)</pre>', dumped.stdout)
    assert found is not None, dumped.stdout[-2000:]
    layout = json.loads(found.group(1))
    assert layout["bars"] == len(failed_report().phases), layout
    assert min(layout["chart"]) > 0, layout
    assert 0 <= layout["failures_top"] < layout["failures_bottom"] <= layout["fold"], layout
