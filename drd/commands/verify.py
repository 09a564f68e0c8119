"""`drd verify REFERENCE`: is this artifact verified under a trust policy? Which key, where."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import structlog

from drd.app import outcome as app_outcome
from drd.commands.output import emit, fail
from drd.commands.units import abbreviate, short
from drd.config import Endpoint, Settings, load_settings
from drd.errors import InvalidReference, NotFound, VerificationError
from drd.oci.digest import Digest
from drd.oci.mediatype import is_index
from drd.oci.ref import Ref
from drd.registry.client import RegistryClient
from drd.registry.layout import LAYOUT_PREFIX, LayoutRef, LayoutSource
from drd.registry.transport import TLSSettings, build_http_client
from drd.resources import open_registry, retry_policy, trust_policy
from drd.retry import RetryPolicy
from drd.trust.keys import TrustPolicy
from drd.trust.policy import MALFORMED, Verified, children_to_verify, signature_tag
from drd.trust.tree import MAX_DEPTH
from drd.trust.verify import SignatureSource, verify_artifact

log = structlog.get_logger(__name__)

NOT_FOUND = "not-found"
# What the answer calls each failed check: one word a person or a script can act on.
# The specific check stays in the JSON as "check".
_PUBLIC_REASONS = {
    "wrong-digest": "bad-signature",
    "wrong-type": "bad-signature",
    "malformed": "bad-signature",
    "payload-too-large": "bad-signature",
    "missing-blob": "bad-signature",
    "wrong-reference": "untrusted-identity",
    "rekor": "tlog-invalid",
}
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def register(sub: Any, command: Any) -> None:
    """Add `verify`."""
    p = command("verify", verify)
    p.add_argument(
        "reference",
        help="registry/repository:tag or registry/repository@sha256:…, where registry is"
        " a host or an endpoint's name ([endpoints.NAME]: its URL, credentials and TLS);"
        " or an OCI image layout: oci:PATH:TAG, oci:PATH@sha256:…",
    )
    p.add_argument(
        "--trust", default=None, help="trust policy ([trust.NAME]); default: the only one"
    )


@dataclass
class Check:
    """The answer for one digest: verified (with the key and where the signature was) or not."""

    digest: Digest
    verified: Verified | None = None
    reason: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether a trusted signature names exactly this digest."""
        return self.verified is not None

    def to_json(self) -> dict[str, Any]:
        """Machine form: digest, verdict, reason, key and signature location."""
        doc: dict[str, Any] = {
            "digest": str(self.digest),
            "verified": self.ok,
            "reason": public_reason(self.reason),
            "check": self.reason,
            "message": self.message,
            "kind": None,
            "identity": None,
            "issuer": None,
            "key": None,
            "signature": None,
            "rekor": None,
        }
        v = self.verified
        if v is None:
            return doc
        doc["kind"] = v.form
        doc["identity"] = v.identity or None
        doc["issuer"] = v.issuer or None
        if v.attestations:
            doc["attestations"] = list(v.attestations)
        doc["key"] = {"fingerprint": v.key_fingerprint, "source": v.key_source}
        doc["signature"] = _signature_location(v)
        if v.rekor:
            doc["rekor"] = {"log_index": v.log_index, "integrated_time": v.integrated_time}
        if v.docker_reference:
            doc["docker_reference"] = v.docker_reference
        return doc


@dataclass
class Outcome:
    """The whole answer for a reference: the artifact itself and, when required, its children."""

    reference: Ref | LayoutRef
    policy: str
    endpoint: str | None
    top: Check | None = None
    children: list[Check] = field(default_factory=list)
    reason: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        """Verified, and every child the policy requires verified too."""
        return self.top is not None and self.top.ok and all(c.ok for c in self.children)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""

        ref = self.reference
        pinned = str(ref.digest) if ref.digest else None
        top = self.top.to_json() if self.top is not None else {"digest": pinned}
        layout = ref.path if isinstance(ref, LayoutRef) else None
        return {
            "reference": str(ref),
            "registry": None if isinstance(ref, LayoutRef) else ref.registry,
            "layout": str(layout) if layout is not None else None,
            "endpoint": self.endpoint,
            "repository": None if isinstance(ref, LayoutRef) else ref.repository,
            "tag": ref.tag,
            "trust": self.policy,
            "verified": self.ok,
            "digest": top.get("digest"),
            "reason": public_reason(self.reason),
            "check": self.reason,
            "message": self.message,
            "kind": top.get("kind"),
            "identity": top.get("identity"),
            "issuer": top.get("issuer"),
            "key": top.get("key"),
            "signature": top.get("signature"),
            "rekor": top.get("rekor"),
            "docker_reference": top.get("docker_reference", ""),
            "children": [c.to_json() for c in self.children],
        }

    def human(self) -> str:
        """Human text: the verdict, then one aligned line per fact."""
        verdict = "verified" if self.ok else "NOT verified"
        lines = [f"{verdict}: {self.reference}"]
        top = self.top
        if top is not None:
            lines.append(f"  digest     {short(top.digest)}")
        lines.append(f"  trust      {self.policy}")
        if top is not None and top.verified is not None:
            lines += _verified_lines(top.verified)
        if self.reason:
            shown = public_reason(self.reason)
            check = "" if shown == self.reason else f" ({self.reason})"
            lines.append(f"  reason     {shown}{check}: {abbreviate(self.message)}")
        for child in self.children:
            state = "verified" if child.ok else f"NOT verified ({child.reason})"
            lines.append(f"  child      {short(child.digest)} {state}")
        return "\n".join(lines)


def public_reason(reason: str) -> str:
    """The answer's reason for a failed check: one of the documented few, or "" when verified."""
    return _PUBLIC_REASONS.get(reason, reason)


def _signature_location(v: Verified) -> dict[str, Any]:

    if v.form == "cosign":
        layer = str(v.signature_digest) if v.signature_digest else None
        return {"form": v.form, "tag": signature_tag(v.digest), "layer": layer}
    referrer = str(v.signature_digest) if v.signature_digest else None
    return {"form": v.form, "referrer": referrer}


def _verified_lines(v: Verified) -> list[str]:

    lines = [f"  kind       {v.form}"]
    if v.identity:
        lines.append(f"  identity   {v.identity}")
    if v.issuer:
        lines.append(f"  issuer     {v.issuer}")
    lines.append(f"  key        {v.key_fingerprint} ({v.key_source})")
    if v.attestations:
        lines.append(f"  attested   {', '.join(v.attestations)}")
    if v.form == "cosign":
        lines.append(
            f"  signature  tag {signature_tag(v.digest)}, layer {short(v.signature_digest)}"
        )
    else:
        lines.append(f"  signature  {v.form} referrer {short(v.signature_digest)}")
    if v.rekor:
        when = (
            dt.datetime.fromtimestamp(v.integrated_time, dt.UTC).isoformat()
            if v.integrated_time is not None
            else "?"
        )
        lines.append(f"  rekor      log index {v.log_index}, integrated {when}")
    return lines


async def verify(args: argparse.Namespace) -> app_outcome.Outcome:
    """Verify one reference; exit 0 verified, 1 not (or not found), 2 usage, 78 bad config."""

    ref: Ref | LayoutRef
    try:
        # The syntax first, so a bad reference is a usage error whatever the config.
        _check_syntax(args.reference)
        settings = load_settings(args.config)
        ref, named = _resolve(settings, args.reference)
    except InvalidReference as exc:
        return fail(args, str(exc))
    name, problem = _trust_name(settings, args.trust)
    if name is None:
        return fail(args, problem)
    policy = trust_policy(settings.trust[name])
    if isinstance(ref, LayoutRef):
        # The layout's directory name stands for the repository (Notation scopes, references).
        source = LayoutSource(ref.path)
        outcome = await check_reference(source, ref, policy, ref.path.resolve().name)
    else:
        endpoint = named or endpoint_for(settings, ref.registry)
        retry = retry_policy(settings.retry)
        async with _client(endpoint, ref.registry, retry) as client:
            outcome = await check_reference(client, ref, policy)
        outcome.endpoint = endpoint.name if endpoint is not None else None
    log.info(
        "verify.finished",
        reference=str(ref),
        digest=str(outcome.top.digest) if outcome.top else None,
        verified=outcome.ok,
        reason=outcome.reason,
    )
    emit(args, outcome.to_json(), outcome.human())
    return app_outcome.Outcome.OK if outcome.ok else app_outcome.Outcome.FAILED


def _trust_name(settings: Settings, wanted: str | None) -> tuple[str | None, str]:
    """The trust policy to use and "", or None and why there is none."""
    names = sorted(settings.trust)
    if wanted is not None:
        if wanted in settings.trust:
            return wanted, ""
        known = ", ".join(names) or "none configured"
        return None, f"no trust policy named {wanted} (known: {known})"
    if len(names) == 1:
        return names[0], ""
    if not names:
        return None, "no [trust.NAME] policy is configured"
    return None, f"several trust policies ({', '.join(names)}): choose one, --trust"


async def check_reference(
    client: SignatureSource,
    ref: Ref | LayoutRef,
    policy: TrustPolicy,
    repository: str | None = None,
) -> Outcome:
    """
    Verify what *ref* names at *client* (a registry or a layout) under *policy*.

    A tag is resolved once, to the digest of the bytes it serves; that digest is
    what is verified. With ``require_children``, each child of an index must
    verify too, and the children of a nested index that verifies, to any depth (as
    replication checks them). Registry failures other than "not found" propagate.
    """

    outcome = Outcome(reference=ref, policy=policy.name, endpoint=None)
    repo = repository if repository is not None else getattr(ref, "repository", "")
    reference = str(ref.digest) if ref.digest is not None else (ref.tag or "latest")
    try:
        manifest = await client.get_manifest(repo, reference)
    except NotFound as exc:
        outcome.reason, outcome.message = NOT_FOUND, str(exc)
        return outcome
    outcome.top = await _check(client, repo, manifest.digest, policy)
    todo = [(manifest, 0)] if outcome.top.ok else []
    seen = {manifest.digest}
    while todo:
        index, depth = todo.pop(0)
        kinds = {d.digest: d.media_type for d in index.manifests}
        for child in children_to_verify(index, policy):
            if child in seen:
                continue
            seen.add(child)
            check = await _check(client, repo, child, policy)
            if check.ok and is_index(kinds[child]):
                if depth + 1 >= MAX_DEPTH:
                    check = Check(child, reason=MALFORMED, message=f"nests deeper than {MAX_DEPTH}")
                else:
                    todo.append((await client.get_manifest(repo, str(child)), depth + 1))
            outcome.children.append(check)
    failed = next((c for c in [outcome.top, *outcome.children] if not c.ok), None)
    if failed is not None:
        outcome.reason = failed.reason
        prefix = "" if failed is outcome.top else f"child {failed.digest}: "
        outcome.message = prefix + failed.message
    return outcome


async def _check(client: SignatureSource, repo: str, digest: Digest, policy: TrustPolicy) -> Check:

    try:
        return Check(digest, verified=await verify_artifact(client, repo, digest, policy))
    except VerificationError as exc:
        return Check(digest, reason=exc.reason, message=exc.message)


def _check_syntax(text: str) -> None:
    """Raise `InvalidReference` unless *text* is a reference, or one after an endpoint name."""
    if text.startswith(LAYOUT_PREFIX):
        LayoutRef.parse(text)
        return
    try:
        Ref.parse(text)
    except InvalidReference:
        first, slash, rest = text.partition("/")
        if not slash or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", first):
            raise
        Ref.parse(f"endpoint/{rest}")  # an endpoint name may have "_", a host may not


def _resolve(settings: Settings, text: str) -> tuple[Ref | LayoutRef, Endpoint | None]:
    """*text* parsed, with the endpoint its first part names (then its host) or None."""
    if text.startswith(LAYOUT_PREFIX):
        return LayoutRef.parse(text), None
    named = named_endpoint(settings, text)
    if named is None:
        return Ref.parse(text), None
    return Ref.parse(f"{named.host}/{text.partition('/')[2]}"), named


def named_endpoint(settings: Settings, reference: str) -> Endpoint | None:
    """
    The endpoint whose name begins *reference* (``primary/team-a/app:v1``), or None.
    Names have no dot and no port, so only a bare host (``localhost``) could be meant
    instead: the configured name wins, as the operator chose it.
    """
    first, slash, _ = reference.partition("/")
    return settings.endpoints.get(first) if slash else None


def endpoint_for(settings: Settings, registry: str) -> Endpoint | None:
    """The configured endpoint serving *registry* (host[:port]), or None."""
    wanted = registry.lower()
    for endpoint in settings.endpoints.values():
        host = endpoint.host.lower()
        default = _DEFAULT_PORTS.get(endpoint.scheme, "")
        if wanted in (host, f"{host}:{default}") or host == f"{wanted}:{default}":
            return endpoint
    return None


@contextlib.asynccontextmanager
async def _client(
    endpoint: Endpoint | None, registry: str, retry: RetryPolicy
) -> AsyncIterator[RegistryClient]:
    """The configured endpoint's client (its credentials and TLS), else an anonymous one."""

    if endpoint is not None:
        async with open_registry(endpoint, retry) as client:
            yield client
        return
    # Plain http only for loopback, as for configured endpoints; https everywhere else.
    scheme = "http" if _is_loopback(registry) else "https"
    host = urlsplit(f"//{registry}").hostname or ""
    async with build_http_client(TLSSettings(), registry_host=host) as http:
        yield RegistryClient(registry, f"{scheme}://{registry}", http, retry)


def _is_loopback(registry: str) -> bool:
    hostname = urlsplit(f"//{registry}").hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
