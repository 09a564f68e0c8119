"""
Render the benchmark's figures as Markdown: one table per corpus, then drd's ratios.

``python -m bench.report A.json [B.json …]`` renders (and merges) saved results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
REPLICATION = ("cold", "warm", "incremental")


def render(results: dict[str, Any]) -> str:
    """The whole report: machine, then per corpus the figures and the ratios."""
    lines = ["## Machine", ""]
    for key, value in {**results["machine"], **results["versions"]}.items():
        lines.append(f"- {key}: {value}")
    lines += [
        "",
        f"Scale: {results['scale']}. Cold runs per tool: {results.get('repeat', 1)}, warm runs: "
        f"{results.get('warm_repeat', results.get('repeat', 1))} (interleaved, each round "
        "starting with the next tool, the disk synced before every run; the median by wall "
        "time is shown).",
        "",
    ]
    rows = results["rows"]
    for corpus in dict.fromkeys(r["corpus"] for r in rows):
        mine = [r for r in rows if r["corpus"] == corpus]
        first = mine[0]
        lines += [f"## {corpus}", "", _describe(first, mine), ""]
        lines += [*_figures(mine), "", *_ratios(mine), ""]
        floor = _floor(mine)
        if floor:
            lines += [*floor, ""]
        drill = _drill(mine)
        if drill:
            lines += [*drill, ""]
    return "\n".join(lines)


def _describe(first: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    cold = next((r for r in rows if r["phase"] == "cold"), first)
    inc = next((r for r in rows if r["phase"] == "incremental"), None)
    text = f"{cold['tags']} tags, {cold['bytes'] / MiB:.1f} MiB of unique blobs."
    if inc is not None:
        text += (
            f" Incremental step: {inc['changed_tags']} tags new or moved, "
            f"{inc['bytes'] / MiB:.1f} MiB of new blobs, {inc['tags']} tags afterwards."
        )
    loads = [r["load1"] for r in rows if "load1" in r]
    if loads:
        text += (
            f" Load average (1 min) on the machine while it ran: {min(loads):.1f} to "
            f"{max(loads):.1f}."
        )
    return text


def _scope(row: dict[str, Any]) -> int:
    """Tags a phase is about: all of them, except the incremental phase's changed ones."""
    return int(row["changed_tags"] if row["phase"] == "incremental" else row["tags"])


def _figures(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| phase | tool | wall s | MiB/s | images/s | req/tag | requests | peak RSS MiB "
        "| CPU s | registries' CPU s | same digests |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        wall = max(r["wall_s"], 1e-6)
        mbps = f"{r['bytes'] / MiB / wall:.1f}" if r["bytes"] else "n/a"
        ok = "yes" if r["verified"] and not r["failed"] else "**no**"
        walls = r.get("walls") or [r["wall_s"]]
        spread = f" ({min(walls):.2f}..{max(walls):.2f})" if len(walls) > 1 else ""
        out.append(
            f"| {r['phase']} | {r['tool']} | {r['wall_s']:.2f}{spread} | {mbps} "
            f"| {_scope(r) / wall:.1f} | {r['requests'] / max(r['tags'], 1):.2f} "
            f"| {r['requests']} | {r['rss_mib']:.0f} | {r['cpu_s']:.1f} "
            f"| {sum(r.get('registry_cpu_s', {}).values()):.1f} | {ok} |"
        )
    return out


def _ratios(rows: list[dict[str, Any]]) -> list[str]:
    out = [
        "| phase | drd vs skopeo sync (per repository) | drd vs skopeo sync (YAML) "
        "| drd throughput vs raw | drd req/tag vs skopeo | drd RSS vs skopeo "
        "| drd pass alone, s | pass alone vs skopeo |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for phase in dict.fromkeys(r["phase"] for r in rows if r["phase"] in REPLICATION):
        by_tool = {r["tool"]: r for r in rows if r["phase"] == phase}
        drd = by_tool.get("drd")
        if drd is None:
            continue
        out.append(
            f"| {phase} | {_speedup(by_tool.get('skopeo'), drd)} "
            f"| {_speedup(by_tool.get('skopeo-yaml'), drd)} "
            f"| {_of_raw(by_tool.get('raw'), drd)} "
            f"| {_fraction(by_tool.get('skopeo'), drd, 'requests')} "
            f"| {_fraction(by_tool.get('skopeo'), drd, 'rss_mib')} "
            f"| {_pass_alone(drd)} | {_pass_speedup(by_tool.get('skopeo'), drd)} |"
        )
    return [
        *out,
        "",
        "drd vs skopeo: skopeo's wall time over drd's (higher is better for drd). "
        "Throughput vs raw: the raw reference's wall time over drd's (1.00 = as fast as the raw "
        "copy). req/tag and RSS: drd's figure over skopeo's (lower is better for drd). "
        "Pass alone: the pass as drd timed it itself, without the interpreter's start-up "
        "(what each scheduled pass of `drd run` costs).",
    ]


# Targets of the no-op pass against the whole-process floor (issue: one-shot ≥ 80 %,
# the daemon's in-process pass ≥ 90 %).
ONE_SHOT_TARGET, DAEMON_TARGET = 0.80, 0.90


def _floor(rows: list[dict[str, Any]]) -> list[str]:
    """The no-op pass against the whole-process floor: speed as a share of the floor's."""
    warm = {r["tool"]: r for r in rows if r["phase"] == "warm"}
    floor = warm.get("floor")
    if floor is None:
        return []
    out = [
        "| no-op pass | wall s | of the floor's speed | same, per round | target | req/tag "
        "| peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    named = (
        ("floor", "floor process (tags lists + one HEAD per tag, 8 at a time)", None),
        ("drd", "`drd replicate` one-shot, whole process", ONE_SHOT_TARGET),
        ("drd-daemon", "daemon's pass, in process", DAEMON_TARGET),
    )
    for tool, label, target in named:
        r = warm.get(tool)
        if r is None:
            continue
        walls = r.get("walls") or [r["wall_s"]]
        spread = f" ({min(walls):.2f}..{max(walls):.2f})" if len(walls) > 1 else ""
        share = floor["wall_s"] / max(r["wall_s"], 1e-6)
        rounds = sorted(_per_round(floor, r))
        judged = rounds[len(rounds) // 2] if rounds else share
        met = "met" if judged >= (target or 0.0) else "not met"
        verdict = "" if target is None else f"{target:.0%}: {met}"
        per_round = f"{judged:.0%} ({rounds[0]:.0%}..{rounds[-1]:.0%})" if rounds else "n/a"
        out.append(
            f"| {label} | {r['wall_s']:.3f}{spread} | {share:.0%} | {per_round} | {verdict} "
            f"| {r['requests'] / max(r['tags'], 1):.2f} | {r['rss_mib']:.0f} |"
        )
    return [
        *out,
        "",
        "Of the floor's speed: the floor's wall time over the pass's (100 % = as fast as the "
        "floor), from the medians. Per round: the same ratio within each interleaved round "
        "(the runs closest in time, least apart in the machine's load), median and range; "
        "the target is judged on it. The daemon's figure is the median of its passes after "
        "the first, over clients it keeps open; the one-shot figure includes the "
        "interpreter's start-up, as the floor's does.",
    ]


def _per_round(floor: dict[str, Any], other: dict[str, Any]) -> list[float]:
    """The floor's wall time over *other*'s, round by round (both ``walls`` in round order)."""
    mine, theirs = other.get("walls") or [], floor.get("walls") or []
    if len(mine) != len(theirs) or len(mine) < 2:
        return []
    return [f / max(m, 1e-6) for f, m in zip(theirs, mine, strict=True)]


def _drill(rows: list[dict[str, Any]]) -> list[str]:
    """The drill's pull-and-re-hash phase against the raw pull of the same blobs."""
    drill = next((r for r in rows if r["phase"] == "drill" and r["tool"] == "drd"), None)
    raw = next((r for r in rows if r["phase"] == "drill" and r["tool"] == "raw pull"), None)
    if drill is None:
        return []
    phases = drill["extra"].get("phases", {})
    out = [
        "| drill phase | seconds |",
        "|---|---:|",
        *(f"| {name} | {seconds:.2f} |" for name, seconds in phases.items()),
    ]
    pull = phases.get("pull and re-hash")
    if raw is not None and pull:
        mib = drill["bytes"] / MiB
        share = raw["wall_s"] / pull
        verdict = "met" if share >= DRILL_VERIFY_TARGET else "not met"
        out += [
            "",
            f"Pull and re-hash: {mib / pull:.1f} MiB/s{_runs(drill.get('verify_s'))}; raw pull "
            f"(GET and sha256 of every blob, 8 streams): {mib / max(raw['wall_s'], 1e-6):.1f} "
            f"MiB/s including its start-up{_runs(raw.get('walls'))}; drill pull vs raw pull: "
            f"{share:.0%} (target {DRILL_VERIFY_TARGET:.0%}: {verdict}).",
        ]
    return out + _rto(drill, rows)


# The RTO estimate's target: within this fraction of the restore it estimates.
RTO_TOLERANCE = 0.25


def _rto(drill: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The drill's RTO estimate against `drd restore` of everything plus its verification."""
    restore = next((r for r in rows if r["phase"] == "restore" and r["tool"] == "drd"), None)
    verify = next((r for r in rows if r["phase"] == "restore" and r["tool"] == "verify"), None)
    rto = drill["extra"].get("rto") or {}
    estimate = rto.get("estimate_s")
    if restore is None or verify is None or not estimate or restore["failed"]:
        return []
    measured = restore["wall_s"] + verify["wall_s"]
    ratio = estimate / max(measured, 1e-6)
    met = abs(ratio - 1) <= RTO_TOLERANCE
    startup = rto.get("startup_s")
    return [
        "",
        f"RTO estimate vs measured: the drill estimated {estimate:.2f} s (fixed "
        f"{rto.get('fixed_s', 0.0):.2f} s, start-up "
        f"{'unmeasured' if startup is None else f'{startup:.2f} s'}); `drd restore` of the "
        f"whole snapshot into an empty registry took {restore['wall_s']:.2f} s and a pull and "
        f"re-hash of every blob from it {verify['wall_s']:.2f} s, {measured:.2f} s in all: "
        f"estimate/measured {ratio:.2f}, target within ±{RTO_TOLERANCE:.0%}: "
        f"{'met' if met else '**not met**'}.",
    ]


# Drill verify (re-hash of restored content) against a raw pull of the same blobs.
DRILL_VERIFY_TARGET = 0.80


def _runs(seconds: list[float] | None) -> str:
    """' (median of N runs: a..b s)' for repeated figures; nothing for one run."""
    if not seconds or len(seconds) < 2:
        return ""
    return f" (median of {len(seconds)} runs, {min(seconds):.2f}..{max(seconds):.2f} s)"


def _pass_alone(drd: dict[str, Any]) -> str:
    seconds = drd.get("extra", {}).get("duration_s")
    return "n/a" if seconds is None else f"{seconds:.2f}"


def _pass_speedup(other: dict[str, Any] | None, drd: dict[str, Any]) -> str:
    seconds = drd.get("extra", {}).get("duration_s")
    if other is None or seconds is None:
        return "n/a"
    return f"{other['wall_s'] / max(seconds, 1e-3):.1f}x"


def _speedup(other: dict[str, Any] | None, drd: dict[str, Any]) -> str:
    if other is None:
        return "n/a"
    return f"{other['wall_s'] / max(drd['wall_s'], 1e-6):.2f}x"


def _of_raw(raw: dict[str, Any] | None, drd: dict[str, Any]) -> str:
    if raw is None:
        return "n/a"
    return f"{raw['wall_s'] / max(drd['wall_s'], 1e-6):.0%}"


def _fraction(other: dict[str, Any] | None, drd: dict[str, Any], key: str) -> str:
    if other is None or not other[key]:
        return "n/a"
    return f"{drd[key] / other[key]:.2f}"


def merge(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' results as one: the first run's machine, every run's rows."""
    merged = dict(documents[0])
    merged["rows"] = [row for doc in documents for row in doc["rows"]]
    repeats = {(d.get("repeat", 1), d.get("warm_repeat", d.get("repeat", 1))) for d in documents}
    if len(repeats) > 1:
        merged["repeat"] = "/".join(str(d.get("repeat", 1)) for d in documents)
        merged["warm_repeat"] = "/".join(
            str(d.get("warm_repeat", d.get("repeat", 1))) for d in documents
        )
    return merged


def main(argv: list[str]) -> int:
    documents = [json.loads(Path(path).read_text()) for path in argv]
    if not documents:
        sys.stderr.write("usage: python -m bench.report RESULTS.json [MORE.json …]\n")
        return 2
    sys.stdout.write(render(merge(documents)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
