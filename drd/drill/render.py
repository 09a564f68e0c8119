"""
A `DrillReport` for people: text, Markdown and HTML, and the three files written.

The HTML page is self-contained: inline CSS, an inline SVG timeline of the phases,
no script and no external asset. Every value that comes from a registry, a
snapshot or the configuration is escaped before it is written into the page.
The verdict comes first, then the RTO/RPO against their targets, the timeline,
every failure with its digest and reason, and the per-repository table.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

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
        f"({size(rb.bytes)}); signatures: {rb.signed_ok} verified, {rb.unsigned} unsigned, "
        f"{rb.signature_failures} failed, {rb.unchecked} not checked"
    )
    unsigned = [r.repository for r in report.repositories if r.status == "unsigned"]
    if unsigned:
        lines.append(f"  unsigned: {', '.join(unsigned[:20])}")
    if report.error:
        lines.append(f"  error: {report.error}")
    for failure in report.failures[:50]:
        where = f"{failure.repository}:{failure.tag}" if failure.tag else failure.repository
        lines.append(f"  failed [{failure.phase}] {where} {failure.digest}: {failure.reason}")
    if len(report.failures) > 50:
        lines.append(f"  ... and {len(report.failures) - 50} more failures (see the report)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- markdown


def _md(text: object) -> str:
    """Escape a value for a Markdown table cell."""
    value = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return value.replace("<", "&lt;").replace(">", "&gt;").replace("`", "\\`")


def render_markdown(report: DrillReport) -> str:
    """The report as Markdown: verdict first, then targets, phases, failures, repositories."""
    j = report.judgement
    out = [f"# {_md(report.title)}", "", f"**{report.verdict}**", ""]
    if j is not None and j.reasons:
        out += [f"- {_md(r)}" for r in j.reasons] + [""]
    if report.error:
        out += [f"Error: {_md(report.error)}", ""]
    out += ["| objective | target | measured | met |", "| --- | --- | --- | --- |"]
    if j is not None:
        rto = j.rto
        out.append(
            f"| RTO (whole registry) | {duration(j.rto_target_s)} | "
            f"{duration(rto.value_s if rto else None)} | {'yes' if j.rto_met else 'no'} |"
        )
        out.append(
            f"| RPO | {duration(j.rpo_target_s)} | {duration(j.rpo_s)} | "
            f"{'yes' if j.newest_rpo_met else 'no'} |"
        )
        if j.worst_rpo is not None:
            out.append(
                f"| RPO, worst case in the window | {duration(j.rpo_target_s)} | "
                f"{duration(j.worst_rpo.seconds)} | {'yes' if j.worst_rpo_met else 'no'} |"
            )
    rb = report.readback
    out += [
        "",
        f"- Target: `{_md(report.target)}`"
        + (f", namespace `{_md(report.namespace)}`" if report.namespace else ""),
        f"- Source: `{_md(report.source)}`"
        + (f", snapshot `{_md(report.snapshot)}`" if report.snapshot else ""),
        f"- Started {_stamp(report.started_at)}, took {duration(report.duration_s)}",
        f"- Tags: {rb.tags_ok} of {rb.tags} as expected"
        + (
            f" ({report.chosen} of {report.release_tags} release tags, seed {report.seed})"
            if report.sample
            else ""
        ),
        f"- Pulled: {rb.manifests} manifests ({size(rb.manifest_bytes)}), "
        f"{rb.blobs} blobs ({size(rb.blob_bytes)}), every digest recomputed",
        f"- Signatures ({_md(report.trust) or 'no trust policy'}): {rb.signed_ok} verified, "
        f"{rb.unsigned} unsigned, {rb.signature_failures} failed, {rb.unchecked} not checked",
        "",
        "## Phases",
        "",
        "| phase | start | duration | ok | detail |",
        "| --- | --- | --- | --- | --- |",
    ]
    out += _md_tables(report)
    out += ["", "## Method", ""]
    if j is not None:
        if j.rto is not None:
            out.append(f"- RTO: {_md(j.rto.method)}")
        out.append(f"- RPO: {_md(j.rpo_method)}")
        if j.worst_rpo_method:
            out.append(f"- Worst-case RPO: {_md(j.worst_rpo_method)}")
    if report.cleanup:
        out.append(f"- Cleanup: {_md(_cleanup_text(report.cleanup))}")
    out += [f"- {_md(n)}" for n in report.notes]
    out += ["", f"drd {__version__}, drill {_md(report.id)}", ""]
    return "\n".join(out)


def _md_tables(report: DrillReport) -> list[str]:
    """The phase rows, then the failures and repositories sections."""
    out: list[str] = []
    for p in report.phases:
        out.append(
            f"| {_md(p.name)} | +{duration(p.started_s)} | {duration(p.duration_s)} | "
            f"{'yes' if p.ok else 'no'} | {_md(p.detail)} |"
        )
    out += ["", "## Failures", ""]
    if report.failures:
        out += ["| phase | repository | tag | digest | reason |", "| --- | --- | --- | --- | --- |"]
        for f in report.failures:
            out.append(
                f"| {_md(f.phase)} | {_md(f.repository)} | {_md(f.tag)} | `{_md(f.digest)}` | "
                f"{_md(f.reason)} |"
            )
    else:
        out.append("None.")
    out += [
        "",
        "## Repositories",
        "",
        "| repository | checked at | tags | manifests | blobs | bytes | signatures | status |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.repositories:
        out.append(
            f"| {_md(r.repository)} | {_md(r.target)} | {r.tags_ok}/{r.tags_expected} | "
            f"{r.manifests} | {r.blobs} | {size(r.manifest_bytes + r.blob_bytes)} | "
            f"{r.signed_ok} ok, {r.unsigned} unsigned, {r.signature_failures} failed"
            f"{f', {r.unchecked} not checked' if r.unchecked else ''} | {r.status} |"
        )
    return out


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


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


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


def timeline_svg(phases: list[Phase], total_s: float | None = None) -> str:
    """
    The phases as a horizontal bar chart on one time axis, as an inline SVG element.

    Each bar starts at its phase's offset and is as long as it lasted (at least 2 px);
    failed phases are red. Labels and tooltips are escaped.
    """
    label_w, chart_w, row_h, top = 170, 620, 28, 10
    end = max([p.started_s + p.duration_s for p in phases] + [total_s or 0.0, 1e-3])
    height = top + row_h * max(len(phases), 1) + 34
    width = label_w + chart_w + 110
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="max-width:100%;height:auto" '
        'aria-label="timeline of the drill phases">'
    ]
    axis_y = top + row_h * max(len(phases), 1) + 4
    for i in range(5):
        x = label_w + chart_w * i / 4
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_y}" '
            'stroke="#d0d7de" stroke-dasharray="3,3"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle">'
            f"{_e(duration(end * i / 4))}</text>"
        )
    for row, phase in enumerate(phases):
        y = top + row * row_h
        x = label_w + chart_w * phase.started_s / end
        w = max(2.0, chart_w * phase.duration_s / end)
        color = "#1a7f37" if phase.ok else "#cf222e"
        tip = f"{phase.name}: {duration(phase.duration_s)} from +{duration(phase.started_s)}"
        if phase.detail:
            tip += f" - {phase.detail}"
        parts.append(
            f'<text x="{label_w - 10}" y="{y + 17}" text-anchor="end">{_e(phase.name)}</text>'
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 10}" rx="3" '
            f'fill="{color}"><title>{_e(tip)}</title></rect>'
        )
        parts.append(
            f'<text x="{x + w + 6:.1f}" y="{y + 17}">{_e(duration(phase.duration_s))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _gauge(measured: float | None, target: float) -> str:
    if measured is None or target <= 0:
        return '<div class="bar"><span style="width:0"></span></div>'
    share = min(measured / target, 1.0)
    color = "#1a7f37" if measured <= target else "#cf222e"
    return (
        f'<div class="bar" title="{_e(f"{measured / target:.0%} of the target")}">'
        f'<span style="width:{share * 100:.1f}%;background:{color}"></span></div>'
    )


def _met(ok: bool) -> str:
    return '<span class="met">met</span>' if ok else '<span class="missed">missed</span>'


def _cards(report: DrillReport) -> str:
    j = report.judgement
    rb = report.readback
    cards = []
    if j is not None:
        rto = j.rto
        rto_value = rto.value_s if rto else None
        scale = ""
        if rto is not None:
            scale = (
                f" · {duration(rto.fixed_s)} fixed + {duration(rto.measured_s)} measured in full"
                if rto.scale == 1.0
                else f" · {duration(rto.fixed_s)} fixed + x{rto.scale:.2f} of "
                f"{duration(rto.measured_s)} measured"
            )
        cards.append(
            '<div class="card"><h2>RTO, whole registry</h2>'
            f'<div class="big">{_e(duration(rto_value))}</div>'
            f'<div class="sub">target {_e(duration(j.rto_target_s))} · {_met(j.rto_met)}'
            f"{_e(scale)}</div>{_gauge(rto_value, j.rto_target_s)}</div>"
        )
        cards.append(
            '<div class="card"><h2>RPO, data at risk</h2>'
            f'<div class="big">{_e(duration(j.rpo_s))}</div>'
            f'<div class="sub">target {_e(duration(j.rpo_target_s))} · '
            f"{_met(j.newest_rpo_met)}</div>"
            f"{_gauge(j.rpo_s, j.rpo_target_s)}</div>"
        )
        if j.worst_rpo is not None:
            worst = j.worst_rpo.seconds
            cards.append(
                '<div class="card"><h2>RPO, worst case in the window</h2>'
                f'<div class="big">{_e(duration(worst))}</div>'
                f'<div class="sub">target {_e(duration(j.rpo_target_s))} · '
                f"{_met(j.worst_rpo_met)}</div>"
                f"{_gauge(worst, j.rpo_target_s)}</div>"
            )
    sampled = (
        f"{report.chosen} of {report.release_tags} release tags, seed {report.seed}"
        if report.sample
        else "every tag"
    )
    cards.append(
        '<div class="card"><h2>Tags as expected</h2>'
        f'<div class="big">{rb.tags_ok} / {rb.tags}</div>'
        f'<div class="sub">{_e(sampled)}</div></div>'
    )
    cards.append(
        '<div class="card"><h2>Pulled and re-hashed</h2>'
        f'<div class="big">{_e(size(rb.bytes))}</div>'
        f'<div class="sub">{rb.manifests} manifests, {rb.blobs} blobs</div></div>'
    )
    trust = report.trust or "no trust policy"
    cards.append(
        f'<div class="card"><h2>Signatures ({_e(trust)})</h2>'
        f'<div class="big">{rb.signed_ok} verified</div>'
        f'<div class="sub">{rb.unsigned} unsigned · {rb.signature_failures} failed</div></div>'
    )
    return f'<section class="cards">{"".join(cards)}</section>'


def _failures_html(report: DrillReport) -> str:
    if not report.failures:
        return '<p class="none">No failure: every digest, tag and signature checked out.</p>'
    rows = "".join(
        "<tr>"
        f"<td>{_e(f.phase)}</td><td>{_e(f.repository)}</td><td>{_e(f.tag)}</td>"
        f'<td><code title="{_e(f.digest)}">{_e(f.digest)}</code></td><td>{_e(f.reason)}</td>'
        "</tr>"
        for f in report.failures
    )
    return (
        "<table><thead><tr><th>phase</th><th>repository</th><th>tag</th><th>digest</th>"
        f"<th>reason</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _repositories_html(report: DrillReport) -> str:
    if not report.repositories:
        return '<p class="none">No repository was checked.</p>'
    rows = []
    for r in report.repositories:
        cell = {"ok": "okcell", "unsigned": "warncell", "failed": "badcell"}[r.status]
        state = f'<span class="{cell}">{r.status}</span>'
        rows.append(
            "<tr>"
            f"<td>{_e(r.repository)}</td><td><code>{_e(r.target)}</code></td>"
            f'<td class="num">{r.tags_ok} / {r.tags_expected}</td>'
            f'<td class="num">{r.manifests}</td><td class="num">{r.blobs}</td>'
            f'<td class="num">{_e(size(r.manifest_bytes + r.blob_bytes))}</td>'
            f'<td class="num">{r.signed_ok} / {r.unsigned} / {r.signature_failures}</td>'
            f"<td>{state}</td></tr>"
        )
    return (
        "<table><thead><tr><th>repository</th><th>checked at</th><th>tags</th>"
        "<th>manifests</th><th>blobs</th><th>bytes</th>"
        "<th>signatures<br><small>verified / unsigned / failed</small></th><th></th>"
        "</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _details_html(report: DrillReport) -> str:
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
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return f"<dl>{body}</dl>"


def render_html(report: DrillReport) -> str:
    """The report as one self-contained HTML page (no script, no external asset)."""
    j = report.judgement
    verdict_class = "pass" if report.ok else "fail"
    reasons = ""
    if j is not None and j.reasons:
        reasons = "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in j.reasons) + "</ul>"
    elif report.error:
        reasons = f"<ul><li>{_e(report.error)}</li></ul>"
    subtitle = (
        f"started {_stamp(report.started_at)} · took {duration(report.duration_s)} · "
        f"drill {report.id}"
    )
    failures_title = f"Failures ({len(report.failures)})"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(report.verdict)}: {_e(report.title)}</title>"
        f"<style>{_CSS}</style></head><body><main>"
        f'<header class="verdict {verdict_class}"><div class="badge">{_e(report.verdict)}</div>'
        f"<h1>{_e(report.title)}</h1><p>{_e(subtitle)}</p>{reasons}</header>"
        f"{_cards(report)}"
        f"<section><h2>Timeline</h2>{timeline_svg(report.phases, report.duration_s)}</section>"
        f"<section><h2>{_e(failures_title)}</h2>{_failures_html(report)}</section>"
        f"<section><h2>Repositories</h2>{_repositories_html(report)}</section>"
        f"<section><h2>How this was measured</h2>{_details_html(report)}</section>"
        f"<footer>drd {_e(__version__)} · report generated {_e(_stamp(report.finished_at))}"
        "</footer></main></body></html>\n"
    )


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
