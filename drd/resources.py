"""Open every client a command or the daemon needs, from Settings; close them on the way out."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drd.config import Endpoint, Replication, RetrySettings, Settings, Trust
from drd.errors import VerificationError
from drd.oci.digest import Digest
from drd.registry.client import Limits, RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.replicate.filters import RepoFilter, tag_filter
from drd.replicate.runner import Policy, Verifier
from drd.retry import RetryHook, RetryPolicy

if TYPE_CHECKING:
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
        tls, concurrency=endpoint.concurrency, timeout_s=endpoint.timeout
    ) as http:
        yield RegistryClient(
            endpoint.name,
            endpoint.url,
            http,
            retry,
            credentials=endpoint.credentials(),
            limits=Limits(endpoint.concurrency, endpoint.requests_per_second),
            auth_hosts=frozenset(host.lower() for host in endpoint.auth_hosts),
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
    )


def verifier_for(settings: Settings, rep: Replication) -> Verifier | None:
    """
    The signature check a policy's ``require_signature`` asks for, or None.

    With the trust policy's ``require_children``, an index verifies only when every
    child `children_to_verify` names verifies too, in the same repository; the
    first child that does not is the error, its reason kept.
    """
    if rep.require_signature is None:
        return None
    # Imported on use: a policy without signatures never loads cryptography (start-up).
    from drd.trust.policy import children_to_verify
    from drd.trust.verify import fingerprint_verifier

    policy = trust_policy(settings.trust[rep.require_signature])
    verify_one = fingerprint_verifier(policy)
    if not policy.require_children:
        return verify_one

    async def verify_with_children(client: RegistryClient, repository: str, digest: Digest) -> str:
        key = await verify_one(client, repository, digest)
        # Children are read from the verified digest's own bytes, not from any tag.
        manifest = await client.get_manifest(repository, digest)
        for child in children_to_verify(manifest, policy):
            try:
                await verify_one(client, repository, child)
            except VerificationError as exc:
                raise VerificationError(
                    f"index {digest}: child {child} is not verified: {exc.message}",
                    reason=exc.reason,
                    digest=str(digest),
                    child=str(child),
                ) from exc
        return key

    return verify_with_children


def trust_policy(trust: Trust) -> TrustPolicy:
    """Load a `[trust.NAME]` table's keys into a TrustPolicy; raises ConfigError on bad keys."""
    from drd.trust.keys import TrustPolicy, load_public_key

    return TrustPolicy(
        name=trust.name,
        keys=tuple(load_public_key(pem, source) for source, pem in trust.key_pems()),
        rekor_keys=tuple(load_public_key(pem, source) for source, pem in trust.rekor_pems()),
        require_rekor=trust.require_rekor,
        require_children=trust.require_children,
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
