"""Open every client a command or the daemon needs, from Settings; close them on the way out."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drd.config import Endpoint, Replication, RetrySettings, Settings, Snapshots, Trust
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.oci.referrers import AttachedTag
from drd.registry.client import Limits, RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.replicate.runner import TrustCheck
from drd.retry import RetryHook, RetryPolicy
from drd.selection.filters import RepoFilter, tag_filter
from drd.selection.policy import Brake, Policy

if TYPE_CHECKING:
    from drd.replicate.deletions import Recorded, Recorder
    from drd.trust.fulcio import KeylessTrust
    from drd.trust.keys import TrustPolicy
    from drd.trust.notation_trust import NotationTrust


@dataclass
class Resources:
    """Long-lived clients, one per endpoint, opened together and closed together."""

    registries: dict[str, RegistryClient]
    retry: RetryPolicy
    extra: dict[str, object] = field(default_factory=dict)


def retry_policy(settings: RetrySettings, on_retry: RetryHook | None = None) -> RetryPolicy:
    """The RetryPolicy the config asks for."""
    policy = RetryPolicy(
        attempts=settings.attempts,
        budget_s=settings.budget.total_seconds(),
        wait_initial=settings.wait_initial,
        wait_max=settings.wait_max,
    )
    if on_retry is not None:
        policy = dataclasses.replace(policy, on_retry=on_retry)
    return policy


@contextlib.asynccontextmanager
async def open_registry(endpoint: Endpoint, retry: RetryPolicy) -> AsyncIterator[RegistryClient]:
    """One RegistryClient for *endpoint*, its HTTP session closed on exit."""
    tls = TLSSettings(endpoint.ca_file, endpoint.cert_file, endpoint.key_file)
    async with build_http_client(
        tls,
        concurrency=endpoint.concurrency,
        timeout_s=endpoint.timeout,
        registry_host=endpoint.hostname,
    ) as http:
        yield RegistryClient(
            endpoint.name,
            endpoint.url,
            http,
            retry,
            credentials=endpoint.credentials(),
            limits=limits_for(endpoint),
            auth_hosts=frozenset(host.lower() for host in endpoint.auth_hosts),
        )


def limits_for(endpoint: Endpoint) -> Limits:
    """The per-endpoint Limits an `[endpoints.NAME]` table asks for. Pure."""
    return Limits(
        endpoint.concurrency,
        endpoint.requests_per_second,
        deadline_s=endpoint.deadline,
        min_throughput=endpoint.min_throughput,
        max_tags=endpoint.max_tags,
        max_repositories=endpoint.max_repositories,
        chunk_size=endpoint.chunk_size,
    )


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings, on_retry: RetryHook | None = None
) -> AsyncIterator[Resources]:
    """Open a client for every endpoint; close all of them, in reverse, on the way out."""
    retry = retry_policy(settings.retry, on_retry)
    async with contextlib.AsyncExitStack() as stack:
        registries = {
            name: await stack.enter_async_context(open_registry(endpoint, retry))
            for name, endpoint in settings.endpoints.items()
        }
        yield Resources(registries=registries, retry=retry)


def policy_from_config(rep: Replication) -> Policy:
    """Resolve a `[[replication]]` table into the runner's Policy. Pure."""
    repos = tuple(rep.repositories) if rep.repositories is not None else None
    return Policy(
        name=rep.name,
        repositories=RepoFilter(repos, tuple(rep.exclude_repositories)),
        tags=tag_filter(rep.tags, rep.exclude_tags),
        referrers=rep.referrers,
        verify_after_copy=rep.verify_after_copy,
        immutable_tags=rep.immutable_tags,
        concurrency=rep.concurrency,
        propagate_deletions=rep.propagate_deletions,
        brake=Brake(rep.max_deletions, rep.max_deletion_percent),
    )


def deletion_recorder(config: Snapshots | None, retry: RetryPolicy) -> Recorder | None:
    """
    What records a target's repositories before a pass deletes there: a snapshot of them
    (under the target's endpoint name, signed like every snapshot) in ``[snapshots]``'s
    store. None without a store: `drd config check` refuses propagate_deletions then.
    """
    if config is None:
        return None

    async def record(target: str, client: RegistryClient, repositories: Sequence[str]) -> Recorded:
        # Imported on use: a pass that deletes nothing never loads the snapshot package.
        from drd.replicate.deletions import Recorded
        from drd.snapshot.collect import take_snapshot
        from drd.snapshot.sign import IndexKey
        from drd.store.open import open_store

        pem = config.signing_key()
        key = None if pem is None else IndexKey.from_pem(pem, "snapshots.signing_key_file")
        async with open_store(config, retry) as store:
            snap = await take_snapshot(
                client,
                store,
                source_name=target,
                repositories=RepoFilter(tuple(repositories)),
                blobs=False,
                signing_key=key,
                retry=retry,
            )
        tags = {name: dict(record.tags) for name, record in snap.repositories.items()}
        return Recorded(snap.id, target, tags)

    return record


def verifier_for(settings: Settings, rep: Replication) -> TrustCheck | None:
    """
    The signature checks a policy's ``require_signature`` asks for, or None.

    Release digests verify by their own signature; with the trust policy's
    ``require_children``, every index under them and every child of each too, to any
    depth, in the same repository (`drd.trust.tree.verify_tree`). What attached tags
    hold verifies as `drd.trust.attached.verify_attached` says.
    """
    if rep.require_signature is None:
        return None
    # Imported on use: a policy without signatures never loads cryptography (start-up).
    from drd.trust.attached import verify_attached
    from drd.trust.tree import verify_tree
    from drd.trust.verify import fingerprint_verifier

    policy = trust_policy(settings.trust[rep.require_signature])
    verify_one = fingerprint_verifier(policy)

    async def release(client: RegistryClient, repository: str, digest: Digest) -> str:
        return await verify_tree(client, repository, digest, policy, verify_one)

    async def attached(
        client: RegistryClient, repository: str, tag: AttachedTag, manifest: Manifest
    ) -> str:
        return await verify_attached(client, repository, tag, manifest, policy, verify_one)

    return TrustCheck(release, attached)


def trust_policy(trust: Trust) -> TrustPolicy:
    """Load a `[trust.NAME]` table's keys into a TrustPolicy; raises ConfigError on bad keys."""
    from drd.trust.keys import TrustPolicy, load_public_key

    rekor_keys = tuple(load_public_key(pem, source) for source, pem in trust.rekor_pems())
    keyless = keyless_trust(trust)
    if (root := trust.sigstore_root_json()) is not None:
        from drd.trust.sigstore_root import load_sigstore_root

        rekor_keys += load_sigstore_root(root[1], root[0]).rekor_keys
    return TrustPolicy(
        name=trust.name,
        keys=tuple(load_public_key(pem, source) for source, pem in trust.key_pems()),
        rekor_keys=rekor_keys,
        require_rekor=trust.require_rekor,
        require_children=trust.require_children,
        keyless=keyless,
        notation=notation_trusts(trust),
        require_attestations=tuple(trust.require_attestations),
        match_reference=trust.match_reference,
    )


def notation_trusts(trust: Trust) -> tuple[NotationTrust, ...]:
    """The Notation trust of a `[trust.NAME]` table: its own roots first, then trustpolicy.json."""
    from drd.trust.notation_trust import NotationTrust, load_certificates, read_trust_policy

    found: list[NotationTrust] = []
    tsa_roots = [
        c
        for source, data in trust.notation_tsa_root_files()
        for c in load_certificates(data, source)
    ]
    roots = [
        c for source, data in trust.notation_root_files() for c in load_certificates(data, source)
    ]
    if roots:
        found.append(
            NotationTrust(
                roots=tuple(roots),
                identities=tuple(trust.notation_identities),
                tsa_roots=tuple(tsa_roots),
            )
        )
    policy = trust.notation_policy_files()
    if policy is not None:
        document, store = policy
        found.extend(read_trust_policy(document, store, str(trust.notation_policy)))
    return tuple(found)


def keyless_trust(trust: Trust) -> KeylessTrust | None:
    """The keyless half of a `[trust.NAME]` table: Fulcio roots, CT keys, identities."""
    root = trust.sigstore_root_json()
    if not trust.fulcio_pems() and root is None:
        return None
    from drd.trust.fulcio import (
        CLAIM_OIDS,
        CertificateAuthority,
        IdentityRule,
        KeylessTrust,
        authority_from_pem,
    )
    from drd.trust.keys import load_public_key
    from drd.trust.sigstore_root import load_sigstore_root

    authorities = [authority_from_pem(pem, source) for source, pem in trust.fulcio_pems()]
    ctlog = [load_public_key(pem, source) for source, pem in trust.ctlog_pems()]
    tsas: tuple[CertificateAuthority, ...] = ()
    if root is not None:
        loaded = load_sigstore_root(root[1], root[0])
        authorities += loaded.authorities
        ctlog += loaded.ctlog_keys
        tsas = loaded.timestamp_authorities
    rules = tuple(
        IdentityRule(
            issuer=i.issuer,
            issuer_regex=re.compile(i.issuer_regex) if i.issuer_regex else None,
            subject=i.subject,
            subject_regex=re.compile(i.subject_regex) if i.subject_regex else None,
            claims=tuple(
                (name, value) for name in CLAIM_OIDS if (value := getattr(i, name)) is not None
            ),
        )
        for i in trust.identities
    )
    return KeylessTrust(tuple(authorities), rules, tuple(ctlog), tsas)
