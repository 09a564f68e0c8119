"""`drd snapshot create | list | show ID | diff ID1 ID2 | verify ID | prune [--dry-run]`."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from drd.app.history import open_history
from drd.app.outcome import Outcome, of_error
from drd.app.snapshots import (
    check_watermark,
    index_key_for,
    record_snapshot,
    snapshots_config,
    take_snapshot,
)
from drd.commands.folding import fold_items
from drd.commands.output import emit
from drd.commands.units import abbreviate, iec, short
from drd.config import Settings, Snapshots, load_settings
from drd.errors import ConfigError, DrdError, TransientError
from drd.manual import add_common, epilog
from drd.progress import for_terminal, shown
from drd.resources import open_registry, retry_policy
from drd.snapshot.catalog import (
    LATEST,
    SnapshotEntry,
    list_snapshots,
    load_snapshot,
    prune,
    verify_snapshot,
    with_sizes,
)
from drd.snapshot.collect import SnapshotReport
from drd.snapshot.diff import SnapshotDiff, diff
from drd.snapshot.model import Snapshot
from drd.snapshot.sign import IndexKey
from drd.store.base import SnapshotStore
from drd.store.open import open_store


def register(sub: Any, command: Any) -> None:
    """Add `snapshot` and its actions."""
    snap = command("snapshot", snapshot)
    actions = snap.add_subparsers(dest="action", required=True, parser_class=type(snap))

    def action(name: str, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(
            name,
            help=help_,
            description=help_[:1].upper() + help_[1:] + ".",
            epilog=epilog(f"snapshot {name}"),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_common(p)
        p.add_argument(
            "--source",
            default=None,
            help="snapshots of this endpoint (default: [snapshots].source)",
        )
        return p

    action("create", "take a snapshot of the source endpoint now")
    action("list", "list committed snapshots, oldest first")
    show_p = action("show", "print one snapshot's repositories and tags")
    show_p.add_argument("id", help=f"snapshot id or {LATEST!r}")
    show_p.add_argument(
        "--all-tags",
        action="store_true",
        help="list signature, attestation, SBOM and referrer tags too"
        " (default: counted under their image's tag)",
    )
    diff_p = action("diff", "tags added, removed and moved between two snapshots")
    diff_p.add_argument("old", help=f"snapshot id or {LATEST!r}")
    diff_p.add_argument("new", help=f"snapshot id or {LATEST!r}")
    action("verify", "re-hash every object a snapshot references").add_argument(
        "id", help=f"snapshot id or {LATEST!r}"
    )
    action("prune", "apply keep_last / keep_daily / keep_weekly").add_argument(
        "--dry-run", action="store_true", help="print what would be deleted, delete nothing"
    )


async def snapshot(args: argparse.Namespace) -> Outcome:
    """Dispatch one `drd snapshot` action: OK, FAILED (something failed) or UNAVAILABLE."""

    settings = load_settings(args.config)
    config = snapshots_config(settings)
    source = args.source or config.source
    key = index_key_for(config)
    retry = retry_policy(settings.retry)
    async with open_store(config, retry) as store:
        match args.action:
            case "create":
                if source not in settings.endpoints:
                    raise ConfigError(
                        f"no endpoint named {source}",
                        errors=[("snapshots.source", f"{source} is not in [endpoints]")],
                    )
                if key is not None and not key.can_sign:
                    raise ConfigError(
                        "the snapshot signing key is a public key",
                        errors=[("snapshots.signing_key_file", "signing needs the private key")],
                    )
                return await _create(args, settings, store, source, key)
            case "list":
                entries = await with_sizes(store, await list_snapshots(store, source))
                document = {
                    "source": source,
                    "store": store.url,
                    "snapshots": [e.to_json() for e in entries],
                }
                emit(args, document, render_list(source, entries))
                return Outcome.OK
            case "show":
                snap = await load_snapshot(store, source, args.id, verify_key=key)
                await check_watermark(
                    settings, store, snap, ref=args.id, verified=key is not None, action="show"
                )
                emit(args, show_json(snap), render_show(snap, all_tags=args.all_tags))
                return Outcome.OK
            case "diff":
                old = await load_snapshot(store, source, args.old, verify_key=key)
                new = await load_snapshot(store, source, args.new, verify_key=key)
                for ref, snap in ((args.old, old), (args.new, new)):
                    await check_watermark(
                        settings, store, snap, ref=ref, verified=key is not None, action="diff"
                    )
                change = diff(old, new)
                emit(args, change.to_json(), render_diff(change))
                return Outcome.OK
            case "verify":
                return await _verify(args, settings, store, source, key)
            case "prune":
                return await _prune(args, store, source, config)
    raise AssertionError(f"unknown action {args.action!r}")  # pragma: no cover


async def _create(
    args: argparse.Namespace,
    settings: Settings,
    store: SnapshotStore,
    source: str,
    key: IndexKey | None,
) -> Outcome:
    """Take one snapshot now, recorded in the state database like the daemon's."""
    config = snapshots_config(settings)
    retry = retry_policy(settings.retry)
    started = time.time()
    async with (
        open_history(settings, "the snapshot") as state,
        open_registry(settings.endpoints[source], retry) as client,
    ):
        tally = for_terminal(args)
        async with shown(tally):
            report = await take_snapshot(
                config,
                client,
                store,
                source=source,
                key=key,
                retry=retry,
                settings=settings,
                progress=tally,
            )
        await record_snapshot(report, trigger="manual", started=started, state=state)
    emit(args, report.to_json(), render_create(report))
    if report.exception is not None:
        return of_error(report.exception)
    return Outcome.OK if report.ok else Outcome.FAILED


async def _verify(
    args: argparse.Namespace,
    settings: Settings,
    store: SnapshotStore,
    source: str,
    key: IndexKey | None,
) -> Outcome:
    try:
        snap = await load_snapshot(store, source, args.id, verify_key=key)
        await check_watermark(
            settings, store, snap, ref=args.id, verified=key is not None, action="verify"
        )
    except TransientError:
        raise
    except DrdError as exc:
        document = {"snapshot": args.id, "ok": False, "problems": [_problem("index", exc)]}
        emit(args, document, f"snapshot {args.id}: FAILED\n  index: {abbreviate(str(exc))}")
        return Outcome.FAILED
    report = await verify_snapshot(store, snap)
    lines = [
        f"snapshot {snap.id}: {'ok' if report.ok else 'FAILED'}: "
        f"{report.manifests_checked} manifests, {report.blobs_checked} blobs, "
        f"{iec(report.bytes_checked)} re-hashed in {report.duration_s:.2f}s"
    ]
    lines += [f"  {p.kind} {short(p.digest)}: {abbreviate(p.reason)}" for p in report.problems]
    emit(args, report.to_json(), "\n".join(lines))
    return Outcome.OK if report.ok else Outcome.FAILED


async def _prune(
    args: argparse.Namespace, store: SnapshotStore, source: str, config: Snapshots
) -> Outcome:

    report = await prune(
        store,
        source,
        keep_last=config.keep_last,
        keep_daily=config.keep_daily,
        keep_weekly=config.keep_weekly,
        dry_run=args.dry_run,
    )
    verb = "to delete" if report.dry_run else "deleted"
    lines = [
        f"prune of {source}{' (dry run)' if report.dry_run else ''}: "
        f"{len(report.deleted)} snapshots, {report.objects_deleted} objects, "
        f"{iec(report.bytes_freed)} {verb}; {len(report.kept)} snapshots kept"
    ]
    lines += [f"  delete {sid}" for sid in report.deleted]
    if report.sweep_deferred:
        lines.append(
            "  no object deleted: a snapshot is being taken "
            f"({', '.join(report.sweep_deferred)}); the next prune deletes them"
        )
    lines += [
        f"  keep {sid}: its index is locked until {until:%Y-%m-%dT%H:%M:%SZ}"
        for sid, until in sorted(report.retained.items())
    ]
    if report.objects_retained_until:
        lines.append(
            f"  {len(report.objects_retained)} unreferenced objects kept: locked until "
            f"{report.objects_retained_until:%Y-%m-%dT%H:%M:%SZ} at the latest"
        )
    emit(args, report.to_json(), "\n".join(lines))
    return Outcome.OK


def _problem(kind: str, exc: DrdError) -> dict[str, str]:
    return {"kind": kind, "digest": "", "reason": f"{type(exc).__name__}: {exc}"}


# --------------------------------------------------------------------------- rendering


def render_create(report: SnapshotReport) -> str:
    """Human text for `snapshot create`."""
    s = report.summary()
    if report.snapshot is None:
        return f"snapshot of {report.source} FAILED after {s['duration_s']}s: {report.error}"
    lines = [
        f"snapshot {s['id']} of {report.source}: {s['repositories']} repositories, "
        f"{s['tags']} tags, {s['manifests']} manifests ({s['manifests_uploaded']} uploaded), "
        f"{s['blobs']} blobs ({s['blobs_uploaded']} uploaded), {iec(s['bytes_uploaded'])}, "
        f"{s['skipped']} skipped, {s['registry_requests']} registry and "
        f"{s['store_requests']} store requests in {s['duration_s']}s",
        f"  key {report.key}",
    ]
    lines += [f"  skipped {i.repository}:{i.tag}: {abbreviate(i.reason)}" for i in report.skipped]
    return "\n".join(lines)


def render_list(source: str, entries: list[SnapshotEntry]) -> str:
    """Human text for `snapshot list`: what each snapshot holds and what it added."""
    if not entries:
        return f"no snapshots of {source}"

    def size(value: int | None) -> str:
        return "unreadable" if value is None else f"{value} bytes"

    return "\n".join(
        f"{e.id}  {e.source}  {size(e.logical_bytes):>16}  new {size(e.new_bytes):>16}  {e.key}"
        for e in entries
    )


def show_json(snap: Snapshot) -> dict[str, Any]:
    """`snapshot show --json`: the summary, then repositories → tags → digest."""
    return {
        **snap.summary(),
        "source_url": snap.source_url,
        "duration_s": snap.duration_s,
        "repositories": {
            name: {tag: str(d) for tag, d in sorted(repo.tags.items())}
            for name, repo in sorted(snap.repositories.items())
        },
        "skipped": [
            {"repository": s.repository, "tag": s.tag, "reason": s.reason} for s in snap.skipped
        ],
        "settings": [r.to_json() for r in snap.settings],
    }


@dataclass(frozen=True)
class _Tag:
    """A tag of a snapshot's repository, as `fold_items` lists it."""

    repository: str
    tag: str
    digest: str


def _same(_tag: _Tag) -> str:
    """Every tag of a snapshot's repository is in one scope and ended alike."""
    return ""


def render_show(snap: Snapshot, *, all_tags: bool = False) -> str:
    """
    Human text for `snapshot show`: short digests, and signature and referrer tags
    folded into their image's line, ``v1 sha256:… (+ signature)`` (*all_tags*: listed too).
    """
    s = snap.summary()
    stored = "stored" if snap.blobs_stored else f"{s['metadata_blobs']} metadata blobs stored"
    lines = [
        f"snapshot {snap.id} of {snap.source} ({snap.source_url}) taken {s['taken_at']}",
        f"  {s['repositories']} repositories, {s['tags']} tags, {s['manifests']} manifests, "
        f"{s['blobs']} blobs ({stored}), "
        f"{'signed' if snap.signature else 'unsigned'}, index {short(s['digest'])}",
    ]
    for name, repo in sorted(snap.repositories.items()):
        lines.append(f"  {name}")
        tags = [_Tag(name, tag, str(d)) for tag, d in sorted(repo.tags.items())]
        for line in fold_items(tags, scope=_same, ending=_same, all_tags=all_tags):
            lines.append(f"    {line.item.tag:40} {short(line.item.digest)}{line.note()}")
    if snap.settings:
        lines.append("  settings")
        lines += [
            f"    {r.path:40} {r.kind:5} {r.mode:04o} {iec(r.size):>10} {short(r.digest)}"
            + ("" if r.stored else "  (secret: digest only)")
            for r in snap.settings
        ]
    return "\n".join(lines)


def render_diff(change: SnapshotDiff) -> str:
    """Human text for `snapshot diff`."""
    lines = [f"{change.old} → {change.new}"]
    lines += [f"  + repository {r}" for r in change.repositories_added]
    lines += [f"  - repository {r}" for r in change.repositories_removed]
    for c in change.tags:
        if c.kind == "added":
            lines.append(f"  + {c.repository}:{c.tag} {short(c.after)}")
        elif c.kind == "removed":
            lines.append(f"  - {c.repository}:{c.tag} (was {short(c.before)})")
        else:
            lines.append(f"  ~ {c.repository}:{c.tag} {short(c.before)} → {short(c.after)}")
    lines.append(f"  {len(change.manifests_added)} new manifests")
    if len(lines) == 2 and not change.manifests_added:
        lines.insert(1, "  no tag changes")
    return "\n".join(lines)
