"""
`drd run`: the long-running service around the scheduler.

`run_daemon` owns the process: signals, the state database, the HTTP endpoint,
and one *generation* at a time: the clients of one configuration and a
`Scheduler` running its jobs. SIGTERM/SIGINT stop scheduling, drain runs in
progress up to ``daemon.drain_timeout``, cancel the rest and return 0; a second
signal exits at once. SIGHUP loads the configuration again: a valid one drains
the current generation and starts the next, an invalid one is logged and the
configuration in force stays.

It is longer than 500 lines because the process lifecycle (signals, reloads, drain) and
the three job plug-ins it schedules share one `_Service`; what a job does is in `drd.app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from drd.app.drills import drill_job
from drd.app.queue import BATCH, PushQueue, settle
from drd.app.replication import run_pass
from drd.app.snapshots import index_key_for, record_snapshot, take_snapshot
from drd.app.state import (
    cluster_counts,
    describe,
    lease_gate,
    node_presence,
    open_state,
    orphan_finder,
)
from drd.config import Daemon, Replication, Settings, Snapshots
from drd.daemon import sdnotify
from drd.daemon.http import HttpHooks, HttpLimits, Push, build_app, serve_http
from drd.daemon.listener import tls_context
from drd.daemon.orphans import Takeovers, watch_orphans
from drd.daemon.scheduler import Job, Scheduler, Trigger
from drd.errors import ConfigError, DrdError, StateError, StorageError, TransientError
from drd.metrics import Metrics, process_registry
from drd.oci.referrers import is_attached_tag
from drd.replicate.cache import TagCache, open_tag_cache
from drd.replicate.report import PolicyReport
from drd.replicate.runner import Verifier
from drd.resources import (
    Resources,
    deletion_recorder,
    open_resources,
    policy_from_config,
    verifier_for,
)
from drd.selection.policy import Policy
from drd.snapshot.catalog import prune
from drd.state import StateStore
from drd.state.base import SINGLETONS
from drd.store.base import SnapshotStore
from drd.store.open import open_store
from drd.timeline import new_run_id

__all__ = ["PING_INTERVAL", "PUSH_WINDOW", "SettingsLoader", "run_daemon"]

log = structlog.get_logger(__name__)

SettingsLoader = Callable[[Path | None], Settings]

# Endpoint checks behind /readyz: often enough to notice an outage within a scrape or two.
PING_INTERVAL = timedelta(seconds=30)
# The key under which the snapshot store's last outcome sits beside the endpoints' checks.
STORE = "store:snapshots"  # not a valid endpoint name, so never one
# Pushes arriving within this window after the first one are replicated in the same run.
PUSH_WINDOW = 1.0
# How often each node looks for queued pushes it did not hear of itself (another node's
# webhook, a dead node's entries); doubled up to QUEUE_POLL_MAX while the state is away.
QUEUE_POLL = 1.0
QUEUE_POLL_MAX = 30.0
# Orphaned units found by one look of the orphan watch start their takeover pass after
# this long (all of them come in one request; the window only has to let it in).
TAKEOVER_WINDOW = 0.1
# What a push trigger is asked to run for: the entries themselves are in the queue.
_QUEUED = "queued"
# The RPO replication lag is judged against when no [drills] section sets one.
DEFAULT_RPO = timedelta(hours=1)


@dataclass(frozen=True)
class _PolicyPlan:
    """One `[[replication]]` table, resolved: filters, verifier."""

    rep: Replication
    policy: Policy
    verifier: Verifier | None


@dataclass(frozen=True)
class _Config:
    """A configuration, validated beyond the file: trust keys loaded, policies resolved."""

    settings: Settings
    policies: dict[str, _PolicyPlan]

    @classmethod
    def prepare(cls, settings: Settings) -> _Config:
        """Resolve every policy; raises `ConfigError` (e.g. an unusable trust key)."""
        return cls(
            settings,
            {
                rep.name: _PolicyPlan(rep, policy_from_config(rep), verifier_for(settings, rep))
                for rep in settings.replication
            },
        )


@dataclass
class _Generation:
    """One configuration in force: its clients and its scheduler."""

    config: _Config
    resources: Resources
    health: dict[str, str]  # endpoint → "" (answered its last check) or the error
    scheduler: Scheduler = field(init=False)
    takeovers: Takeovers = field(default_factory=Takeovers)  # orphaned units being taken

    @property
    def settings(self) -> Settings:
        return self.config.settings


def _datetime(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _only_item(repository: str, tag: str) -> Hashable:
    """
    The `run_policy(only=…)` item for a pushed tag.

    A signature or attestation tag means "the whole repository", not just the tag:
    it rides only on content the same run confirms, which a run for its tag alone
    would not list.
    """
    return (repository, None if is_attached_tag(tag) else tag)


def _read_at_start(daemon: Daemon) -> tuple[object, ...]:
    """The ``[daemon]`` settings read once, at start."""
    return (
        daemon.listen,
        daemon.state_dir,
        daemon.header_timeout,
        daemon.body_timeout,
        daemon.max_connections,
        daemon.tls_cert_file,
        daemon.tls_key_file,
        daemon.tls_client_ca_file,
    )


def _selects(plan: _PolicyPlan, push: Push) -> bool:
    """Whether a policy replicates this push: its repository, and its tag or an attached tag."""
    if not plan.policy.repositories(push.repository):
        return False
    if is_attached_tag(push.tag):
        return plan.rep.referrers
    return plan.policy.tags(push.tag)


class _Service:
    """The process-wide parts: metrics, state, signals, the HTTP endpoint, generations."""

    def __init__(self, loader: SettingsLoader, config_path: Path | None, config: _Config) -> None:
        self._loader = loader
        self._config_path = config_path
        self.config = config
        self.metrics = Metrics(process_registry(), node=config.settings.daemon.node_label)
        self.stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._signals = 0
        self.current: _Generation | None = None
        self._state: StateStore | None = None
        # Why the shared state (PostgreSQL) cannot be reached now; "" when it can.
        self._state_problem = ""
        self._tags: TagCache | None = None
        self._queue: PushQueue | None = None

    @property
    def state(self) -> StateStore:
        """The state database (open while `run` runs)."""
        if self._state is None:
            raise RuntimeError("the state database is not open")
        return self._state

    # ------------------------------------------------------------------ signals

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)

    def _remove_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("daemon.stop_requested", signal=sig.name)
            self.stop.set()
            return
        # A second signal: the operator will not wait for the drain. Tags are written
        # last, so a copy cut here leaves unreferenced blobs, never a tag on partial content.
        log.warning("daemon.forced_exit", signal=sig.name)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + sig.value)

    # ------------------------------------------------------------------ the main loop

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        try:
            async with contextlib.AsyncExitStack() as stack:
                self._state = await self._open_state()
                stack.push_async_callback(self._state.close)
                self._queue = PushQueue(
                    self._state,
                    self.config.settings.daemon.node_name,
                    self.config.settings.state.lease_ttl.total_seconds(),
                )
                with contextlib.suppress(StateError):  # unreachable: the leases run out
                    await self._state.free_queued(self._queue.node)  # held by a past life
                await stack.enter_async_context(
                    node_presence(self.config.settings, self._state, self._on_state_health)
                )
                # One known-target-tags cache for the process: no-op passes skip target HEADs.
                state_dir = self.config.settings.daemon.state_dir
                self._tags = await stack.enter_async_context(open_tag_cache(state_dir))
                port = await stack.enter_async_context(self._serve())
                daemon = self.config.settings.daemon
                log.info(
                    "daemon.listening",
                    address=f"{daemon.listen_host}:{port}",
                    tls=daemon.tls,
                    client_certificates=daemon.tls_client_ca_file is not None,
                )
                watchdog = asyncio.create_task(self._watchdog())
                try:
                    await self._generations()
                finally:
                    watchdog.cancel()
        finally:
            self._remove_signals(loop)
        log.info("daemon.stopped")
        return 0

    async def _open_state(self) -> StateStore:
        settings = self.config.settings
        try:
            # The state is a cache of history: a corrupt file is set aside, not a restart loop.
            state = await open_state(settings, reset_corrupt=True)
        except OSError as exc:
            state_dir = describe(settings)
            raise ConfigError(
                f"cannot open the state database in {state_dir}: {exc.strerror or exc}",
                errors=[("daemon.state_dir", f"{state_dir} is not a writable directory")],
            ) from exc
        if state.moved_aside is not None:
            self.metrics.record_state_reset()
        return state

    @contextlib.asynccontextmanager
    async def _serve(self) -> AsyncIterator[int]:
        daemon = self.config.settings.daemon
        hooks = HttpHooks(token=self._token, on_push=self._on_push, readiness=self._readiness)
        limits = HttpLimits(
            header_timeout=daemon.header_timeout.total_seconds(),
            body_timeout=daemon.body_timeout.total_seconds(),
            max_connections=daemon.max_connections,
        )
        tls = None
        if daemon.tls_cert_file is not None and daemon.tls_key_file is not None:
            tls = tls_context(daemon.tls_cert_file, daemon.tls_key_file, daemon.tls_client_ca_file)
        app = build_app(self.metrics, hooks, limits)
        try:
            async with serve_http(app, daemon.listen_host, daemon.listen_port, tls=tls) as port:
                yield port
        except OSError as exc:
            # Retryable, not a config error: the previous process may still hold the port.
            raise TransientError(f"cannot listen on {daemon.listen}: {exc.strerror}") from exc

    async def _generations(self) -> None:
        started = False
        while True:
            generation_stop = asyncio.Event()
            async with open_resources(self.config.settings, self.metrics.on_retry) as resources:
                generation = await self._start_generation(resources)
                runs = asyncio.create_task(generation.scheduler.run(generation_stop))
                watcher = asyncio.create_task(self._watch_queue(generation, generation_stop))
                orphans = asyncio.create_task(self._watch_orphans(generation, generation_stop))
                sdnotify.notify("READY=1")
                if not started:
                    started = True
                    log.info("daemon.started", jobs=len(generation.scheduler.jobs))
                new_config = await self._wait_for_stop_or_reload(runs)
                sdnotify.notify("STOPPING=1" if new_config is None else "RELOADING=1")
                generation_stop.set()
                await runs
                for task in (watcher, orphans):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if new_config is None or self.stop.is_set():
                return
            self._apply(new_config)

    async def _wait_for_stop_or_reload(self, runs: asyncio.Task[Any]) -> _Config | None:
        """Wait for a stop signal (None) or a SIGHUP with a valid configuration (returned)."""
        stop = asyncio.create_task(self.stop.wait())
        try:
            while True:
                reload = asyncio.create_task(self._reload.wait())
                await asyncio.wait({stop, reload, runs}, return_when=asyncio.FIRST_COMPLETED)
                if self.stop.is_set() or runs.done():
                    reload.cancel()
                    return None
                self._reload.clear()
                config = await self._load()
                if config is not None:
                    return config
        finally:
            stop.cancel()

    async def _load(self) -> _Config | None:
        """Load and prepare the configuration again; None (logged) when it is invalid."""
        try:
            settings = await asyncio.to_thread(self._loader, self._config_path)
            config = _Config.prepare(settings)
        except ConfigError as exc:
            self.metrics.record_reload(False)
            log.error(  # noqa: TRY400 - a refused config is an operating condition, no traceback
                "daemon.reload_failed",
                error=str(exc),
                errors=[f"{path}: {message}" for path, message in exc.errors],
                keeping="the configuration in force",
            )
            return None
        log.info("daemon.reloading")
        return config

    def _apply(self, config: _Config) -> None:
        old, new = self.config.settings.daemon, config.settings.daemon
        if _read_at_start(old) != _read_at_start(new):
            log.warning(
                "daemon.restart_required",
                reason="daemon.state_dir and the listener settings (listen, timeouts,"
                " max_connections, tls_*) apply at the next start",
            )
        self.config = config

    async def _watchdog(self) -> None:
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ one generation

    async def _start_generation(self, resources: Resources) -> _Generation:
        config = self.config
        settings = config.settings
        previous = self.current.health if self.current is not None else {}
        # Endpoints keep their last check across a reload: /readyz does not flap.
        health = {name: previous[name] for name in settings.endpoints if name in previous}
        generation = _Generation(config, resources, health)
        now = time.time()
        jobs = [
            Job(f"ping:{name}", "ping", PING_INTERVAL, self._pinger(generation, name))
            for name in settings.endpoints
        ]
        triggers = []
        in_cluster = orphan_finder(settings, self.state) is not None
        for name, plan in config.policies.items():
            await self.state.register_policy(name, plan.rep.targets, now)
            record = await self.state.register_job(f"replicate:{name}", "replicate", now)
            jobs.append(
                Job(
                    f"replicate:{name}",
                    "replicate",
                    plan.rep.interval,
                    self._replicator(generation, name, None),
                    last_run=_datetime(record.last_started),
                )
            )
            triggers.append(
                Trigger(f"push:{name}", "push", self._pusher(generation, name), PUSH_WINDOW)
            )
            if in_cluster:
                taker = self._taker(generation, name)
                triggers.append(
                    Trigger(f"takeover:{name}", "takeover", taker, TAKEOVER_WINDOW, overlap=True)
                )
        # Snapshots (with their prune) and drills run once cluster-wide.
        singletons = await snapshot_jobs(self, generation) + await drill_jobs(self, generation)
        jobs += [singleton(settings, self.state, job) for job in singletons]
        generation.scheduler = Scheduler(
            jobs,
            triggers,
            drain=settings.daemon.drain_timeout.total_seconds(),
            jitter=settings.daemon.jitter,
            observe=self.metrics.record_job,
        )
        self.current = generation
        self._configure_metrics(settings)
        await self.refresh_replication_metrics()
        await self._resume_pending(generation)
        return generation

    def _configure_metrics(self, settings: Settings) -> None:
        metrics = self.metrics
        metrics.record_reload(True)
        metrics.forget_endpoints()
        for name, status in (self.current.health if self.current else {}).items():
            metrics.record_endpoint_check(name, not status)
        metrics.set_intervals({r.name: r.interval.total_seconds() for r in settings.replication})
        drills = settings.drills
        metrics.set_rpo((drills.rpo if drills else DEFAULT_RPO).total_seconds())

    async def _resume_pending(self, generation: _Generation) -> None:
        """Pushes announced before a restart or reload are replicated now, not at the interval."""
        now = time.time()
        for name in generation.config.policies:
            pending = await self.state.pending(name)
            if pending:
                await self.state.enqueue(name, pending, now)
                generation.scheduler.request(f"push:{name}", [_QUEUED])

    async def _watch_queue(self, generation: _Generation, stop: asyncio.Event) -> None:
        """
        Wake the push trigger of each policy with due entries in the queue: pushes another
        node received, and those a dead node held. Polls every `QUEUE_POLL` seconds, backing
        off to `QUEUE_POLL_MAX` while the state cannot be reached (the heartbeat says so).
        """
        delay = QUEUE_POLL
        while not stop.is_set():
            try:
                due = await self.state.queue_depth(due=True)
            except StateError:
                delay = min(delay * 2, QUEUE_POLL_MAX)
            else:
                delay = QUEUE_POLL
                for name in due:
                    if name in generation.config.policies:
                        generation.scheduler.request(f"push:{name}", [_QUEUED])
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()

    async def _watch_orphans(self, generation: _Generation, stop: asyncio.Event) -> None:
        """
        In a cluster, every third of the lease TTL: a takeover pass for the units whose
        holder's lease ran out unfinished (`drd.daemon.orphans`). Nothing with SQLite.
        """
        find = orphan_finder(generation.settings, self.state)
        if find is None:
            return
        ttl = generation.settings.state.lease_ttl.total_seconds()

        def take(name: str, repositories: list[str]) -> None:
            plan = generation.config.policies.get(name)
            if plan is None:  # a policy this node's configuration does not have
                return
            mine = [r for r in repositories if plan.policy.repositories(r)]
            wanted = generation.takeovers.wanted(name, mine, time.monotonic())
            if wanted:
                log.info("takeover.orphaned", policy=name, repositories=wanted)
                generation.scheduler.request(f"takeover:{name}", wanted)

        await watch_orphans(find, take, stop, period=ttl / 3, longest=QUEUE_POLL_MAX)

    async def refresh_replication_metrics(self) -> None:
        """
        Reload lag, last success, pending and drift of the configured policies from state;
        while the state cannot be read the gauges keep their values (the lag still grows).
        """
        configured = {
            (name, target)
            for name, plan in self.config.policies.items()
            for target in plan.rep.targets
        }
        try:
            await self._refresh_from_state(configured)
        except StateError as exc:
            log.debug("metrics.state_unavailable", error=str(exc))

    async def _refresh_from_state(self, configured: set[tuple[str, str]]) -> None:
        records = [s for s in await self.state.syncs() if (s.policy, s.target) in configured]
        self.metrics.set_replication_state(
            watermarks={(s.policy, s.target): s.watermark for s in records},
            last_success={(s.policy, s.target): s.success_mark for s in records},
            pending={(s.policy, s.target): s.pending for s in records},
            drift={(s.policy, s.target): s.drift for s in records},
        )
        if (counts := await cluster_counts(self.config.settings, self.state)) is not None:
            self.metrics.set_cluster(*counts)

    # ------------------------------------------------------------------ jobs

    def _pinger(self, generation: _Generation, name: str) -> Callable[[], Awaitable[None]]:
        client = generation.resources.registries[name]

        async def ping() -> None:
            try:
                await client.ping()
            except DrdError as exc:
                generation.health[name] = f"{type(exc).__name__}: {exc}"
                log.warning("endpoint.unavailable", endpoint=name, error=generation.health[name])
                self.metrics.record_endpoint_check(name, False)
                return
            if generation.health.get(name):
                log.info("endpoint.available", endpoint=name)
            generation.health[name] = ""
            self.metrics.record_endpoint_check(name, True)

        return ping

    def _pusher(self, generation: _Generation, name: str) -> Callable[[list[Any]], Awaitable[None]]:
        """One push run: take a batch of *name*'s queued pushes, replicate them, settle them."""

        async def push(_wakes: list[Any]) -> None:
            queue = self._queue
            if queue is None:
                return
            try:
                entries = await queue.take(name)
            except StateError as exc:
                log.warning("queue.unavailable", policy=name, error=str(exc))
                return
            if not entries:
                return
            items = list(dict.fromkeys(_only_item(e.repository, e.tag) for e in entries))
            report = None
            cancelled = False
            try:
                async with queue.held(entries):
                    report = await self._replicator(generation, name, items)()
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                await queue.finish(settle(entries, report, ttl=queue.ttl, cancelled=cancelled))
            if len(entries) == BATCH:  # more may be waiting
                generation.scheduler.request(f"push:{name}", [_QUEUED])

        return push

    def _taker(self, generation: _Generation, name: str) -> Callable[[list[Any]], Awaitable[None]]:
        """One takeover run: a pass of *name* over the orphaned repositories it was given."""
        ttl = generation.settings.state.lease_ttl.total_seconds()

        async def take(repositories: list[Any]) -> None:
            only = [(repository, None) for repository in repositories]
            report = None
            try:
                report = await self._replicator(generation, name, only, trigger="takeover")()
            finally:
                # A pass that could not claim them (source down, a bug) leaves them
                # orphaned: asked for again after one TTL, not at every look.
                again = 0.0 if report is not None and not report.error else ttl
                generation.takeovers.over(name, repositories, time.monotonic(), again)

        return take

    def _replicator(
        self,
        generation: _Generation,
        name: str,
        only: list[Any] | None,
        *,
        trigger: str | None = None,
    ) -> Callable[[], Awaitable[PolicyReport]]:
        """
        One run of policy *name*: a full pass (*only* None), or the pushed items (or the
        repositories *trigger* ``takeover`` takes over from a dead node).
        """
        plan = generation.config.policies[name]
        full = only is None
        trigger = trigger or ("schedule" if full else "push")
        job = f"replicate:{name}" if full else f"{trigger}:{name}"

        # In a cluster a full pass leaves what another node did in the last half interval.
        fresh = plan.rep.interval.total_seconds() / 2 if full else 0.0

        async def replicate() -> PolicyReport:
            report = await run_pass(
                generation.resources,
                plan.policy,
                plan.rep.source,
                plan.rep.targets,
                verifier=plan.verifier,
                job=job,
                trigger=trigger,
                only=only,
                cache=self._tags,
                state=self.state,
                metrics=self.metrics,
                gate=lease_gate(generation.settings, self.state, name, fresh=fresh),
                recorder=deletion_recorder(
                    generation.settings.snapshots, generation.resources.retry
                ),
            )
            await self.refresh_replication_metrics()
            return report

        return replicate

    # ------------------------------------------------------------------ HTTP hooks

    def _token(self) -> str | None:
        secret = self.config.settings.daemon.webhook_token()
        return None if secret is None else secret.get_secret_value()

    def _readiness(self) -> tuple[bool, Mapping[str, str]]:
        generation = self.current
        if generation is None:
            return False, {"config": "not loaded yet"}
        reasons: dict[str, str] = {}
        for name in generation.settings.endpoints:
            status = generation.health.get(name)
            if status is None:
                reasons[f"endpoint:{name}"] = "not checked yet"
            elif status:
                reasons[f"endpoint:{name}"] = status
        if store := generation.health.get(STORE):
            reasons[STORE] = store
        if self._state_problem:
            reasons["state"] = self._state_problem
        return not reasons, reasons

    def _on_state_health(self, problem: str) -> None:
        """The node's heartbeat reached PostgreSQL (""), or why not: /readyz says so."""
        if problem and not self._state_problem:
            log.warning("state.unreachable", error=problem)
        elif self._state_problem and not problem:
            log.info("state.reachable")
        self._state_problem = problem

    async def _on_push(self, pushes: list[Push]) -> tuple[int, int]:
        """
        Route each push to every policy selecting it: pending in the replication
        bookkeeping, and on the shared queue, where any node (this one first) takes it.
        """
        generation = self.current
        if generation is None:
            return 0, len(pushes)
        accepted = ignored = 0
        now = time.time()
        queued: dict[str, list[tuple[str, str]]] = {}
        for push in pushes:
            routed = False
            for name, plan in generation.config.policies.items():
                if not _selects(plan, push):
                    continue
                await self.state.note_push(name, plan.rep.targets, push.repository, push.tag, now)
                queued.setdefault(name, []).append((push.repository, push.tag))
                routed = True
            accepted += routed
            ignored += not routed
        for name, entries in queued.items():
            # Queued before answering: once the sender has its 202, the push survives this
            # node (a reload, a crash) and any node of the cluster may take it.
            await self.state.enqueue(name, entries, now)
            generation.scheduler.request(f"push:{name}", [_QUEUED])
        if accepted:
            await self.refresh_replication_metrics()
        return accepted, ignored


# ---------------------------------------------------------------------- plug-in points


async def snapshot_jobs(service: _Service, generation: _Generation) -> list[Job]:
    """
    The snapshot job of ``[snapshots]``, when configured; retention is applied after each.

    Each run opens the store (`open_store`), takes a snapshot of the source
    (`run_snapshot`), prunes by ``keep_*``, and records the run in state and metrics.
    """
    config = generation.settings.snapshots
    if config is None:
        service.metrics.configure_snapshots(None, 0.0, 0.0)
        return []
    record = await service.state.register_job("snapshot", "snapshot", time.time())
    since = record.last_success if record.last_success is not None else record.first_seen
    service.metrics.configure_snapshots(config.source, config.interval.total_seconds(), since)
    key = index_key_for(config)
    client = generation.resources.registries[config.source]
    retry = generation.resources.retry

    async def snapshot() -> None:
        started = time.time()
        with structlog.contextvars.bound_contextvars(job="snapshot", run_id=new_run_id()):
            async with open_store(config, retry) as store:
                report = await take_snapshot(
                    config,
                    client,
                    store,
                    source=config.source,
                    key=key,
                    retry=retry,
                    settings=generation.settings,
                )
                if report.snapshot is not None:
                    await _prune(store, config)
        # /readyz names the store while it fails, and clears once a snapshot commits.
        if isinstance(report.exception, StorageError):
            generation.health[STORE] = f"{type(report.exception).__name__}: {report.exception}"
        elif report.snapshot is not None:
            generation.health[STORE] = ""
        await record_snapshot(
            report,
            trigger="schedule",
            started=started,
            state=service.state,
            metrics=service.metrics,
        )

    last = _datetime(record.last_started)
    return [Job("snapshot", "snapshot", config.interval, snapshot, last_run=last)]


async def _prune(store: SnapshotStore, config: Snapshots) -> None:
    """Apply retention after a committed snapshot; a failed prune leaves the snapshot be."""
    try:
        pruned = await prune(
            store,
            config.source,
            keep_last=config.keep_last,
            keep_daily=config.keep_daily,
            keep_weekly=config.keep_weekly,
        )
    except DrdError as exc:
        log.warning("snapshot.prune_failed", error=f"{type(exc).__name__}: {exc}")
        return
    if pruned.deleted or pruned.objects_deleted:
        log.info(
            "snapshot.pruned",
            snapshots=len(pruned.deleted),
            objects=pruned.objects_deleted,
            bytes_freed=pruned.bytes_freed,
        )


async def drill_jobs(service: _Service, generation: _Generation) -> list[Job]:
    """
    The drill job of ``[drills]``, when configured: `drd.drill.runner.drill_job` on
    ``[drills] interval``. It writes the reports into ``[drills] report_dir`` and records
    each drill with `StateStore.record_run` and `Metrics.record_drill`.
    """
    drills = generation.settings.drills
    if drills is None:
        service.metrics.configure_drills(None, 0.0, 0.0, 0.0)
        return []
    state = service.state
    record = await state.register_job("drill", "drill", time.time())
    since = record.last_success if record.last_success is not None else record.first_seen
    service.metrics.configure_drills(
        drills.target, drills.interval.total_seconds(), drills.rto.total_seconds(), since
    )
    run = drill_job(
        generation.settings,
        generation.resources.registries,
        generation.resources.retry,
        state=state,
        metrics=service.metrics,
    )
    last = _datetime(record.last_started)
    return [Job("drill", "drill", drills.interval, run, last_run=last)]


# A singleton job done by any node less than this fraction of its interval ago is not
# run again: cluster-wide, two runs of a job are never closer than that.
SINGLETON_SPACING = 0.8


def singleton(settings: Settings, state: StateStore, job: Job) -> Job:
    """
    *job*, run by one node of the cluster at a time (as is with SQLite): the node whose
    timer fires first claims it; the others skip it, or wait while the holder runs it and
    take it over if the holder dies (its lease expires) before finishing.
    """
    interval = job.interval.total_seconds()
    gate = lease_gate(settings, state, SINGLETONS, fresh=interval * SINGLETON_SPACING)
    if gate is None:
        return job

    async def run() -> None:
        try:
            token = await gate.claim_when_free(job.name)
        except StateError as exc:  # nobody can claim it now: the next interval tries again
            log.warning("job.not_claimed", job=job.name, error=str(exc))
            return
        if token is None:
            log.info("job.done_elsewhere", job=job.name)
            return
        done = False
        try:
            async with gate.running():
                await job.run()
            done = True
        finally:
            try:
                await gate.release(job.name, token, done=done)
            except StateError as exc:  # the lease runs out by itself
                log.warning("job.release_failed", job=job.name, error=str(exc))

    return dataclasses.replace(job, run=run)


async def run_daemon(settings_loader: SettingsLoader, config_path: Path | None) -> int:
    """
    Run the daemon until SIGTERM or SIGINT; return the exit code (0 after a drain).

    Raises:
        ConfigError: the configuration (or the state directory) is unusable at start.
        TransientError: the listen address cannot be bound.
    """
    settings = await asyncio.to_thread(settings_loader, config_path)
    return await _Service(settings_loader, config_path, _Config.prepare(settings)).run()
