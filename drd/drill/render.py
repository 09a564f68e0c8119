"""
A `DrillReport` for people: text, Markdown and HTML, and the three files written.

The Markdown and HTML forms are Jinja2 templates (drd/drill/templates, package data);
this module works out the values they show. The HTML page is self-contained: inline
CSS, an inline SVG timeline of the phases, no script and no external asset. It is
autoescaped: every value that comes from a registry, a snapshot or the configuration
arrives as text.
The verdict comes first, then the RTO/RPO against their targets, the timeline,
every failure with its digest and reason, and the per-repository table.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from drd import __version__
from drd.drill.judge import size
from drd.drill.report import DrillReport
from drd.files import atomic_write
from drd.timeline import Phase, duration


def _stamp(when: dt.datetime | None) -> str:
    if when is None:
        return "-"
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(digest: str) -> str:
    """``sha256:0123456789ab`` for tables; the full digest stays in titles and JSON."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart else digest


# --------------------------------------------------------------------------- text


def render_text(report: DrillReport) -> str:
    """A few lines for a terminal: verdict, reasons, RTO/RPO, failures."""
    j = report.judgement
    lines = [f"{report.title}: {report.verdict} in {duration(report.duration_s)}"]
    if j is not None:
        for reason in j.reasons:
            lines.append(f"  reason: {reason}")
        rto = j.rto
        lines.append(
            f"  RTO estimate {duration(rto.value_s if rto else None)} "
            f"(target {duration(j.rto_target_s)}); RPO {duration(j.rpo_s)} "
            f"(target {duration(j.rpo_target_s)})"
            + (
                f"; worst-case RPO {duration(j.worst_rpo.seconds)}"
                if j.worst_rpo is not None
                else ""
            )
        )
    rb = report.readback
    lines.append(
        f"  checked {rb.tags_ok}/{rb.tags} tags, {rb.manifests} manifests, {rb.blobs} blobs "
        f"({size(rb.bytes)}); signatures: {rb.signed_ok} signed ok, {rb.unsigned} unsigned, "
        f"{rb.signature_failures} signature failures, {rb.unchecked} unchecked"
    )
    unsigned = [r.repository for r in report.repositories if r.status == "unsigned"]
    if unsigned:
        lines.append(f"  unsigned: {', '.join(unsigned[:20])}")
    if report.error:
        lines.append(f"  error: {report.error}")
    for failure in report.failures[:50]:
        where = f"{failure.repository}:{failure.tag}" if failure.tag else failure.repository
        lines.append(
            f"  failed [{failure.phase}] {where} {_short(failure.digest)}: {failure.reason}"
        )
    if len(report.failures) > 50:
        lines.append(f"  ... and {len(report.failures) - 50} more failures (see the report)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- markdown


def _md(text: object) -> str:
    """Escape a value for a Markdown table cell."""
    value = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return value.replace("<", "&lt;").replace(">", "&gt;").replace("`", "\\`")


def render_markdown(report: DrillReport) -> str:
    """The report as Markdown (templates/report.md): verdict, targets, phases, failures."""
    return _templates().get_template("report.md").render(_context(report))


def _cleanup_text(cleanup: dict[str, Any]) -> str:
    if not cleanup:
        return "nothing to clean up"
    left = cleanup.get("repositories_with_tags") or []
    text = f"{cleanup.get('manifests_deleted', 0)} manifests deleted by digest"
    if left:
        text += f"; tags left behind in {', '.join(str(x) for x in left)}"
    else:
        text += "; no tag left behind"
    if "blobs_deleted" in cleanup:
        text += f"; {cleanup['blobs_deleted']} blobs deleted"
        if cleanup.get("blobs_left"):
            text += (
                f", {cleanup['blobs_left']} ({size(cleanup.get('blob_bytes_left', 0))}) left "
                "for the registry's garbage collection (it refuses blob deletes)"
            )
    if cleanup.get("skipped"):
        text = f"skipped: {cleanup['skipped']}"
    return text


# --------------------------------------------------------------------------- html


_CSS = """
:root{--ok:#1a7f37;--bad:#cf222e;--ink:#1f2328;--mute:#656d76;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
background:#fff}
main{max-width:1100px;margin:0 auto;padding:24px}
.verdict{border-radius:10px;padding:20px 24px;color:#fff;margin-bottom:20px}
.verdict.pass{background:var(--ok)}.verdict.fail{background:var(--bad)}
.verdict .badge{font-size:34px;font-weight:800;letter-spacing:.06em}
.verdict h1{font-size:18px;margin:4px 0 6px;font-weight:600}
.verdict p{margin:0;opacity:.9}
.verdict ul{margin:10px 0 0;padding-left:20px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(190px,1fr));gap:14px;
margin-bottom:24px}
.card{border:1px solid var(--line);border-radius:8px;padding:14px 16px;background:var(--bg)}
.card h2{font-size:12px;text-transform:uppercase;letter-spacing:.08em;color:var(--mute);margin:0}
.card .big{font-size:26px;font-weight:700;margin:4px 0}
.card .sub{color:var(--mute)}
.met{color:var(--ok);font-weight:700}.missed{color:var(--bad);font-weight:700}
.bar{height:8px;background:#e6e9ed;border-radius:4px;overflow:hidden;margin-top:8px}
.bar span{display:block;height:100%}
section{margin-bottom:28px}
section>h2{font-size:18px;border-bottom:1px solid var(--line);padding-bottom:6px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:6px 8px;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--bg);padding:1px 4px;
border-radius:4px;word-break:break-all}
.okcell{color:var(--ok);font-weight:600}.badcell{color:var(--bad);font-weight:600}
.warncell{color:#9a6700;font-weight:600}
.none{color:var(--mute)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dt{color:var(--mute)}dd{margin:0}
footer{color:var(--mute);font-size:12px;border-top:1px solid var(--line);padding-top:10px}
svg text{font:12px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;fill:var(--ink)}
"""


@functools.cache
def _templates() -> jinja2.Environment:
    """The report templates (package data), HTML and SVG autoescaped, Markdown by `_md`."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("drd.drill", "templates"),
        autoescape=jinja2.select_autoescape(["html", "svg"], default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(md=_md, duration=duration, size=size, stamp=_stamp)
    return env


def timeline_svg(phases: list[Phase], total_s: float | None = None) -> Markup:
    """
    The phases as a horizontal bar chart on one time axis, as an inline SVG element.

    Each bar starts at its phase's offset and is as long as it lasted (at least 2 px);
    failed phases are red. Labels and tooltips are escaped (templates/timeline.svg).
    """
    label_w, chart_w, row_h, top = 170, 620, 28, 10
    end = max([p.started_s + p.duration_s for p in phases] + [total_s or 0.0, 1e-3])
    axis_y = top + row_h * max(len(phases), 1) + 4
    ticks = [
        {"x": f"{label_w + chart_w * i / 4:.1f}", "label": duration(end * i / 4)} for i in range(5)
    ]
    bars = []
    for row, phase in enumerate(phases):
        x = label_w + chart_w * phase.started_s / end
        w = max(2.0, chart_w * phase.duration_s / end)
        tip = f"{phase.name}: {duration(phase.duration_s)} from +{duration(phase.started_s)}"
        bars.append(
            {
                "y": top + row * row_h,
                "x": f"{x:.1f}",
                "w": f"{w:.1f}",
                "label_x": f"{x + w + 6:.1f}",
                "name": phase.name,
                "color": "#1a7f37" if phase.ok else "#cf222e",
                "tip": f"{tip} - {phase.detail}" if phase.detail else tip,
                "label": duration(phase.duration_s),
            }
        )
    t = {
        "width": label_w + chart_w + 110,
        "height": axis_y + 30,
        "top": top,
        "row_h": row_h,
        "label_w": label_w,
        "axis_y": axis_y,
        "ticks": ticks,
        "bars": bars,
    }
    svg = _templates().get_template("timeline.svg").render(t=t).strip()
    return Markup(svg)  # noqa: S704 - rendered by an autoescaped template


def _gauge(measured: float | None, target: float) -> dict[str, str] | None:
    """How full a card's bar is, and its colour; None when there is nothing to show."""
    if measured is None or target <= 0:
        return None
    share = min(measured / target, 1.0)
    return {
        "title": f"{measured / target:.0%} of the target",
        "width": f"{share * 100:.1f}%",
        "color": "#1a7f37" if measured <= target else "#cf222e",
    }


def _details(report: DrillReport) -> list[tuple[str, str]]:
    """The "How this was measured" list: (name, value) pairs."""
    j = report.judgement
    items: list[tuple[str, str]] = [
        ("mode", report.mode),
        ("drill id", report.id),
        ("target endpoint", report.target),
        ("source endpoint", report.source),
    ]
    if report.snapshot:
        items.append(("snapshot", f"{report.snapshot} (taken {_stamp(report.snapshot_taken_at)})"))
    if report.namespace:
        items.append(("namespace", report.namespace))
    if j is not None and j.rto is not None:
        items.append(("RTO method", j.rto.method))
    if j is not None:
        items.append(("RPO method", j.rpo_method))
        if j.worst_rpo_method:
            items.append(("worst-case RPO method", j.worst_rpo_method))
    sc, wh = report.scope, report.whole
    items.append(
        (
            "scope / whole",
            f"{sc.tags} / {wh.tags} tags, {sc.manifests} / {wh.manifests} manifests, "
            f"{sc.blobs} / {wh.blobs} blobs, {size(sc.bytes)} / {size(wh.bytes)}",
        )
    )
    if report.restore:
        r = report.restore
        items.append(
            (
                "restore",
                f"{r.get('manifests_pushed', 0)} manifests pushed, "
                f"{r.get('blobs_from_store', 0)} blobs from the store, "
                f"{r.get('blobs_from_endpoints', 0)} from endpoints, "
                f"{r.get('blobs_mounted', 0)} mounted, {size(int(r.get('bytes_uploaded', 0)))}",
            )
        )
    if report.cleanup:
        items.append(("cleanup", _cleanup_text(report.cleanup)))
    items += [("note", n) for n in report.notes]
    return items


def _context(report: DrillReport) -> dict[str, Any]:
    """What both templates read: the report and the values worked out from it."""
    j = report.judgement
    rto = j.rto if j is not None else None
    rto_value = rto.value_s if rto is not None else None
    rto_scale = ""
    if rto is not None:
        rto_scale = (
            f" · {duration(rto.fixed_s)} fixed + {duration(rto.measured_s)} measured in full"
            if rto.scale == 1.0
            else f" · {duration(rto.fixed_s)} fixed + x{rto.scale:.2f} of "
            f"{duration(rto.measured_s)} measured"
        )
    reasons = list(j.reasons) if j is not None and j.reasons else []
    if not reasons and report.error:
        reasons = [report.error]
    return {
        "report": report,
        "j": j,
        "rb": report.readback,
        "rto_value": rto_value,
        "rto_scale": rto_scale,
        "rto_gauge": _gauge(rto_value, j.rto_target_s) if j is not None else None,
        "rpo_gauge": _gauge(j.rpo_s, j.rpo_target_s) if j is not None else None,
        "worst_gauge": (
            _gauge(j.worst_rpo.seconds, j.rpo_target_s)
            if j is not None and j.worst_rpo is not None
            else None
        ),
        "reasons": reasons,
        "subtitle": (
            f"started {_stamp(report.started_at)} · took {duration(report.duration_s)} · "
            f"drill {report.id}"
        ),
        "sampled": (
            f"{report.chosen} of {report.release_tags} release tags, seed {report.seed}"
            if report.sample
            else "every tag"
        ),
        "status_class": {"ok": "okcell", "unsigned": "warncell", "failed": "badcell"},
        "details": _details(report),
        "cleanup": _cleanup_text(report.cleanup) if report.cleanup else "",
        "version": __version__,
    }


def render_html(report: DrillReport) -> str:
    """The report as one self-contained HTML page (templates/report.html)."""
    context = _context(report)
    context["css"] = Markup(_CSS)  # noqa: S704 - a constant of this module
    context["timeline"] = timeline_svg(report.phases, report.duration_s)
    return _templates().get_template("report.html").render(context)


def write_report(report: DrillReport, directory: Path) -> dict[str, Path]:
    """
    Write the JSON, Markdown and HTML forms into *directory* (created when missing).

    Each file is written under a temporary name and renamed, so a reader never sees
    half a report. Returns the paths by format. Raises `OSError`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    forms = {
        "json": json.dumps(report.to_json(), indent=2, sort_keys=False) + "\n",
        "md": render_markdown(report),
        "html": render_html(report),
    }
    written: dict[str, Path] = {}
    for ext, text in forms.items():
        path = directory / f"{report.file_stem}.{ext}"
        atomic_write(path, text)
        written[ext] = path
    return written
