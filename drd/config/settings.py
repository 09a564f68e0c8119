"""
drd's configuration models and their loading: one TOML file plus `DRD_*` environment
overrides. (Models and the loader stay together: the loader fills the models' private
secret attributes and validates cross-references as one step; field types live in
`drd.config.fields`, explanations in `drd.config.explain`.)

`load_settings(path)` is the only code that reads the config file, the environment and the
credential files the config names. It validates everything up front and raises one
`ConfigError` listing every problem as `(path, message)`, e.g. `("replication[0].tags[1]",
"invalid regular expression: ...")`.

- Every key can be overridden as `DRD_<SECTION>__<KEY>` (`DRD_DAEMON__LISTEN`,
  `DRD_ENDPOINTS__PRIMARY__URL`, `DRD_REPLICATION__0__INTERVAL`); the environment wins.
- Secrets never come from the TOML: passwords and tokens are read from `password_file` /
  `token_file` (relative paths resolve against `$CREDENTIALS_DIRECTORY` when set) or from
  `DRD_ENDPOINT_<NAME>_PASSWORD` / `DRD_ENDPOINT_<NAME>_TOKEN`, and kept as `SecretStr` in
  private attributes that neither `repr` nor `model_dump` shows.
- Other relative paths resolve against the config file's directory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import json
import os
import re
import socket
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretBytes,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from drd.config.fields import (
    _BUCKET,
    _LOG_LEVELS,
    _MAX_CONFIG_BYTES,
    _MAX_DOCKER_CONFIG_BYTES,
    _MAX_PEM_BYTES,
    _MAX_SECRET_BYTES,
    _MAX_TRUST_STORE_FILES,
    _NAME,
    _OCI_SOURCE_BUDGET,
    _REPOSITORY,
    DEFAULT_CONFIG_PATH,
    ConfigPath,
    Duration,
    Glob,
    Hook,
    Interval,
    Name,
    NotationIdentity,
    PolicyName,
    PredicateType,
    Regex,
    _check_host,
    _http_url,
    _Invalid,
    _is_loopback,
    _netloc,
)
from drd.config.problems import (
    _explain,
    _hinted,
    _lower_first,
    _short,
    _summary,
)
from drd.errors import ConfigError

# --- models ------------------------------------------------------------------------------------

_MODEL_CONFIG = ConfigDict(
    extra="forbid", frozen=True, allow_inf_nan=False, hide_input_in_errors=True
)


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """Basic (`username` + `password`) or bearer `token` credentials for one endpoint."""

    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    source: str = ""  # where the secret came from: a file path or a variable name

    def __post_init__(self) -> None:
        basic = self.username is not None and self.password is not None
        if basic == (self.token is not None) or (self.token is not None and self.username):
            raise ValueError("credentials are username + password, or a token")

    @property
    def is_token(self) -> bool:
        return self.token is not None


class Endpoint(BaseModel):
    """One registry drd talks to; `credentials()` holds the secret `load_settings` read."""

    model_config = _MODEL_CONFIG

    name: str = ""
    url: str = Field(max_length=2048)
    region: str = Field("", max_length=128)
    username: str | None = Field(None, min_length=1, max_length=256)
    password_file: ConfigPath | None = None
    token_file: ConfigPath | None = None
    docker_config: ConfigPath | None = None
    ca_file: ConfigPath | None = None
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None
    insecure: bool = False
    # Token services on other hosts that may receive this endpoint's credentials
    # (e.g. "auth.docker.io" for Docker Hub, "host:5001" for another port); by default
    # only the registry's own host and port.
    auth_hosts: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=16
    )
    requests_per_second: float | None = Field(None, gt=0, le=1_000_000)
    concurrency: int = Field(16, ge=1, le=1024)
    # Seconds one socket read may wait for data.
    timeout: float = Field(60.0, gt=0, le=86400)
    # Seconds one whole request may take, body included, plus its size at min_throughput
    # bytes per second (a 1 GiB blob at the defaults: 300 s + 4096 s).
    deadline: float = Field(300.0, gt=0, le=86400)
    min_throughput: int = Field(256 * 1024, ge=1024, le=1 << 40)
    # Most tags one repository, and most repositories the catalog, may list.
    max_tags: int = Field(100_000, ge=1, le=100_000_000)
    max_repositories: int = Field(100_000, ge=1, le=100_000_000)
    # Bytes per PATCH for blobs larger than this; None: each blob in one streamed PUT,
    # falling back to 64 MiB PATCHes when the registry refuses one (413 or 416).
    chunk_size: int | None = Field(None, ge=1024, le=1 << 40)

    _credentials: Credentials | None = PrivateAttr(None)

    @field_validator("url")
    @classmethod
    def _normal_url(cls, value: str) -> str:
        scheme, netloc, _ = _http_url(value, allow_path=False)
        return f"{scheme}://{netloc}"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[str, str]] = []
        if self.scheme == "http" and not self.insecure and not _is_loopback(self.hostname):
            problems.append(
                ("url", "plain http is allowed only for a loopback host or with insecure = true")
            )
        if self.password_file is not None and self.token_file is not None:
            problems.append(("token_file", "set password_file or token_file, not both"))
        if self.key_file is not None and self.cert_file is None:
            problems.append(("key_file", "a client key needs cert_file"))
        if problems:
            raise _Invalid(problems)
        return self

    @property
    def scheme(self) -> str:
        """The URL scheme: "http" or "https"."""
        return self.url.split("://", 1)[0]

    @property
    def host(self) -> str:
        """host[:port] as it appears in image references, e.g. "127.0.0.1:5000"."""
        return self.url.split("://", 1)[1]

    @property
    def hostname(self) -> str:
        """The host without port or IPv6 brackets."""
        return urlsplit(self.url).hostname or ""

    def credentials(self) -> Credentials | None:
        """The credentials loaded for this endpoint; None means anonymous."""
        return self._credentials

    def with_credentials(self, credentials: Credentials | None) -> Endpoint:
        """A copy of this endpoint that authenticates with *credentials*."""
        copy = self.model_copy()
        copy._credentials = credentials
        return copy


class Identity(BaseModel):
    """
    One keyless identity a trust policy accepts: certificate subject and OIDC issuer.

    Exact values or regular expressions (matched in full); the optional claims are
    exact values of Fulcio's certificate extensions, e.g. ``source_ref = "refs/heads/main"``.
    """

    model_config = _MODEL_CONFIG

    issuer: str | None = Field(None, min_length=1, max_length=1024)
    issuer_regex: Regex | None = None
    subject: str | None = Field(None, min_length=1, max_length=1024)
    subject_regex: Regex | None = None
    source_repository: str | None = Field(None, min_length=1, max_length=1024)
    source_ref: str | None = Field(None, min_length=1, max_length=1024)
    workflow_trigger: str | None = Field(None, min_length=1, max_length=256)
    build_signer_uri: str | None = Field(None, min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _one_of_each(self) -> Self:
        problems = [
            (exact, f"set exactly one of {exact} and {exact}_regex")
            for exact, pattern in (
                ("issuer", self.issuer_regex),
                ("subject", self.subject_regex),
            )
            if (getattr(self, exact) is None) == (pattern is None)
        ]
        if problems:
            raise _Invalid(problems)
        return self


class Trust(BaseModel):
    """
    A trust policy: the public keys, keyless Sigstore roots and identities, or Notation
    certificates whose signatures make an artifact verified.
    """

    model_config = _MODEL_CONFIG

    name: str = ""
    keys: list[ConfigPath] = Field(default_factory=list, max_length=256)
    rekor_keys: list[ConfigPath] = Field(default_factory=list, max_length=256)
    require_rekor: bool = False
    require_children: bool = False
    fulcio_roots: list[ConfigPath] = Field(default_factory=list, max_length=256)
    ctlog_keys: list[ConfigPath] = Field(default_factory=list, max_length=256)
    # A trusted_root.json path, or "public-good" for the root shipped with drd.
    sigstore_root: str | None = Field(None, min_length=1, max_length=4096)
    identities: list[Identity] = Field(default_factory=list, max_length=256)
    # Notation: trust store certificates (PEM or DER), identities, or Notation's own files.
    notation_roots: list[ConfigPath] = Field(default_factory=list, max_length=256)
    notation_identities: list[NotationIdentity] = Field(default_factory=list, max_length=256)
    notation_tsa_roots: list[ConfigPath] = Field(default_factory=list, max_length=256)
    notation_policy: ConfigPath | None = None
    require_attestations: list[PredicateType] = Field(default_factory=list, max_length=64)
    match_reference: bool = False

    _key_pems: tuple[tuple[str, bytes], ...] = PrivateAttr(())
    _rekor_pems: tuple[tuple[str, bytes], ...] = PrivateAttr(())
    _fulcio_pems: tuple[tuple[str, bytes], ...] = PrivateAttr(())
    _ctlog_pems: tuple[tuple[str, bytes], ...] = PrivateAttr(())
    _sigstore_root: tuple[str, bytes] | None = PrivateAttr(None)
    _notation_roots: tuple[tuple[str, bytes], ...] = PrivateAttr(())
    _notation_tsa_roots: tuple[tuple[str, bytes], ...] = PrivateAttr(())
    _notation_policy: tuple[bytes, dict[str, bytes]] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[str, str]] = []
        if self.require_rekor and not self.rekor_keys and self.sigstore_root is None:
            problems.append(("rekor_keys", "require_rekor = true needs at least one rekor key"))
        keyless = bool(self.fulcio_roots) or self.sigstore_root is not None
        notation = bool(self.notation_roots) or self.notation_policy is not None
        if not self.keys and not keyless and not notation:
            problems.append(
                (
                    "keys",
                    "set keys, fulcio_roots / sigstore_root for keyless,"
                    " or notation_roots / notation_policy",
                )
            )
        if self.fulcio_roots and not self.rekor_keys and self.sigstore_root is None:
            # Without a log key nothing proves when a ten-minute certificate signed.
            problems.append(("rekor_keys", "fulcio_roots need at least one rekor key"))
        if keyless and not self.identities:
            problems.append(("identities", "keyless trust needs at least one [[identities]] entry"))
        for field in ("identities", "ctlog_keys"):
            if getattr(self, field) and not keyless:
                problems.append((field, "applies only with fulcio_roots or sigstore_root"))
        for field in ("notation_identities", "notation_tsa_roots"):
            if getattr(self, field) and not self.notation_roots:
                problems.append((field, "need notation_roots to apply to"))
        if problems:
            raise _Invalid(problems)
        return self

    def notation_root_files(self) -> list[tuple[str, bytes]]:
        """(source path, bytes) of each Notation trust store certificate file."""
        return list(self._notation_roots)

    def notation_tsa_root_files(self) -> list[tuple[str, bytes]]:
        """(source path, bytes) of each RFC 3161 timestamp authority root certificate file."""
        return list(self._notation_tsa_roots)

    def notation_policy_files(self) -> tuple[bytes, dict[str, bytes]] | None:
        """Notation's ``trustpolicy.json`` bytes and its trust store files, when configured."""
        return self._notation_policy

    def with_notation(
        self,
        roots: Iterable[tuple[str, bytes]],
        policy: tuple[bytes, dict[str, bytes]] | None,
        tsa_roots: Iterable[tuple[str, bytes]] = (),
    ) -> Trust:
        """A copy of this policy holding the given Notation material."""
        copy = self.model_copy()
        copy._notation_roots, copy._notation_policy = tuple(roots), policy
        copy._notation_tsa_roots = tuple(tsa_roots)
        return copy

    def key_pems(self) -> list[tuple[str, bytes]]:
        """(source path, PEM bytes) of each signing key, as loaded by `load_settings`."""
        return list(self._key_pems)

    def rekor_pems(self) -> list[tuple[str, bytes]]:
        """(source path, PEM bytes) of each transparency-log key."""
        return list(self._rekor_pems)

    def fulcio_pems(self) -> list[tuple[str, bytes]]:
        """(source path, PEM bytes) of each Fulcio root file."""
        return list(self._fulcio_pems)

    def ctlog_pems(self) -> list[tuple[str, bytes]]:
        """(source path, PEM bytes) of each CT log key."""
        return list(self._ctlog_pems)

    def sigstore_root_json(self) -> tuple[str, bytes] | None:
        """(source, bytes) of the ``trusted_root.json`` this policy names, if any."""
        return self._sigstore_root

    def with_pems(
        self,
        keys: Iterable[tuple[str, bytes]],
        rekor: Iterable[tuple[str, bytes]] = (),
        *,
        fulcio: Iterable[tuple[str, bytes]] = (),
        ctlog: Iterable[tuple[str, bytes]] = (),
        sigstore_root: tuple[str, bytes] | None = None,
    ) -> Trust:
        """A copy of this policy holding the given key material."""
        copy = self.model_copy()
        copy._key_pems, copy._rekor_pems = tuple(keys), tuple(rekor)
        copy._fulcio_pems, copy._ctlog_pems = tuple(fulcio), tuple(ctlog)
        copy._sigstore_root = sigstore_root
        copy._notation_roots, copy._notation_policy = self._notation_roots, self._notation_policy
        copy._notation_tsa_roots = self._notation_tsa_roots
        return copy


# Why a `platforms` filter is refused rather than ignored (README "Multi-arch images").
PLATFORMS_REMOVED = (
    "is not supported: a replica holds whole indexes, every platform, byte for byte. "
    "Copying some platforms would change the index digest (and break its signatures) or "
    "leave it naming manifests the target does not have, which a registry refuses; "
    "remove the key, or narrow what is copied with repositories and tags"
)


class Replication(BaseModel):
    """One replication policy: a source endpoint copied to one or more targets."""

    model_config = _MODEL_CONFIG

    name: PolicyName
    source: Name
    targets: list[Name] = Field(min_length=1, max_length=64)
    repositories: list[Glob] | None = Field(None, min_length=1, max_length=10_000)
    exclude_repositories: list[Glob] = Field(default_factory=list, max_length=10_000)
    tags: list[Regex] | None = Field(None, min_length=1, max_length=1000)
    exclude_tags: list[Regex] = Field(default_factory=list, max_length=1000)
    require_signature: Name | None = None
    referrers: bool = True
    verify_after_copy: bool = True
    immutable_tags: bool = False
    propagate_deletions: bool = False
    # The safety brake on propagated deletions, per pass and target: above either, the
    # pass deletes nothing at that target and reports why.
    max_deletions: int = Field(100, ge=0, le=1_000_000)
    max_deletion_percent: float = Field(10.0, ge=0.0, le=100.0)
    interval: Interval = timedelta(minutes=5)
    concurrency: int = Field(8, ge=1, le=1024)

    @model_validator(mode="before")
    @classmethod
    def _no_platforms(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "platforms" in data:
            raise _Invalid([("platforms", PLATFORMS_REMOVED)])
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[str, str]] = []
        seen: set[str] = set()
        for index, target in enumerate(self.targets):
            if target == self.source:
                problems.append((f"targets[{index}]", "the source cannot also be a target"))
            elif target in seen:
                problems.append((f"targets[{index}]", f"target {target!r} is listed twice"))
            seen.add(target)
        if problems:
            raise _Invalid(problems)
        return self


class Snapshots(BaseModel):
    """Point-in-time snapshots of one endpoint's metadata, kept in a directory, S3 or a registry."""

    model_config = _MODEL_CONFIG

    source: Name
    store: str = Field("file:///var/lib/drd/snapshots", max_length=2048)
    s3_endpoint_url: str | None = Field(None, max_length=2048)
    s3_region: str | None = Field(None, min_length=1, max_length=64)
    s3_sse: Literal["AES256", "aws:kms"] | None = None
    s3_object_lock_days: int | None = Field(None, ge=1, le=36_500)
    s3_object_lock_mode: Literal["COMPLIANCE", "GOVERNANCE"] = "COMPLIANCE"
    interval: Interval = timedelta(hours=1)
    blobs: bool = False
    # Metadata blobs (configs, signature payloads, attestations, SBOMs) up to this size
    # are stored even with blobs = false: "4MiB", "512KiB" or bytes.
    metadata_blob_max: ByteSize = Field(ByteSize(4 * 1024 * 1024), ge=0, le=1 << 30)
    keep_last: int = Field(48, ge=1, le=1_000_000)
    keep_daily: int = Field(30, ge=0, le=100_000)
    keep_weekly: int = Field(12, ge=0, le=100_000)
    signing_key_file: ConfigPath | None = None
    repositories: list[Glob] | None = Field(None, min_length=1, max_length=10_000)
    # Registry settings files recorded with each snapshot; those matching settings_exclude
    # (fnmatch on the absolute path) are recorded by digest only, never stored.
    settings: list[ConfigPath] = Field(default_factory=list, max_length=1000)
    settings_exclude: list[Glob] = Field(default_factory=list, max_length=1000)

    _signing_key: SecretBytes | None = PrivateAttr(None)
    _store_endpoint: Endpoint | None = PrivateAttr(None)

    @field_validator("store")
    @classmethod
    def _normal_store(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError("must not have a query, fragment or credentials")
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise ValueError('a file store is "file:///absolute/path"')
            return "file://" + (parts.path.rstrip("/") or "/")
        if parts.scheme == "s3":
            if not _BUCKET.fullmatch(parts.netloc):
                raise ValueError('an S3 store is "s3://bucket/prefix" with a valid bucket name')
            prefix = parts.path.strip("/")
            return f"s3://{parts.netloc}/{prefix}" if prefix else f"s3://{parts.netloc}"
        if parts.scheme == "oci":
            repository = parts.path.strip("/")
            if not _NAME.fullmatch(parts.netloc) or not _REPOSITORY.fullmatch(repository):
                raise ValueError(
                    'an OCI store is "oci://<endpoint>/<repository>": a configured endpoint\'s '
                    "name and a valid repository name"
                )
            return f"oci://{parts.netloc}/{repository}"
        raise ValueError('must be "file:///path", "s3://bucket/prefix" or "oci://endpoint/repo"')

    @field_validator("s3_endpoint_url")
    @classmethod
    def _normal_s3_url(cls, value: str) -> str:
        scheme, netloc, path = _http_url(value, allow_path=True)
        return f"{scheme}://{netloc}{path}"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if "s3_object_lock_mode" in self.model_fields_set and self.s3_object_lock_days is None:
            raise _Invalid([("s3_object_lock_mode", "applies only with s3_object_lock_days")])
        if self.settings_exclude and not self.settings:
            raise _Invalid([("settings_exclude", "applies only with settings")])
        if self.store_scheme == "s3":
            return self
        s3_only = ("s3_endpoint_url", "s3_region", "s3_sse", "s3_object_lock_days")
        problems = [
            (field, "applies only to an s3:// store")
            for field in s3_only
            if getattr(self, field) is not None
        ]
        # An oci:// store tags each object with its key, "_" and "." taking two characters
        # (drd.store.oci.key_tag); an index key adds 56 to the source's share.
        tagged = len(self.source) + self.source.count("_") + self.source.count(".")
        if self.store_scheme == "oci" and tagged > _OCI_SOURCE_BUDGET:
            problems.append(
                (
                    "source",
                    f"too long for an oci:// store's tags ({_OCI_SOURCE_BUDGET} characters, "
                    '"_" counting twice)',
                )
            )
        if problems:
            raise _Invalid(problems)
        return self

    @property
    def store_scheme(self) -> Literal["file", "s3", "oci"]:
        scheme = self.store.partition("://")[0]
        return "s3" if scheme == "s3" else "oci" if scheme == "oci" else "file"

    @property
    def oci_endpoint_name(self) -> str:
        """The endpoint an ``oci://`` store lives on."""
        if self.store_scheme != "oci":
            raise ValueError("not an oci:// store")
        return self.store.removeprefix("oci://").partition("/")[0]

    def store_endpoint(self) -> Endpoint | None:
        """The endpoint (credentials loaded) of an ``oci://`` store, set by `load_settings`."""
        return self._store_endpoint

    def with_store_endpoint(self, endpoint: Endpoint | None) -> Snapshots:
        """A copy of these settings whose ``oci://`` store uses *endpoint*."""
        copy = self.model_copy()
        copy._store_endpoint = endpoint
        return copy

    @property
    def store_path(self) -> Path:
        """The directory of a file:// store."""
        if self.store_scheme != "file":
            raise ValueError("not a file:// store")
        return Path(self.store.removeprefix("file://"))

    @property
    def s3_bucket(self) -> str:
        if self.store_scheme != "s3":
            raise ValueError("not an s3:// store")
        return self.store.removeprefix("s3://").partition("/")[0]

    @property
    def s3_prefix(self) -> str:
        """The key prefix inside the bucket, without slashes at either end ("" for none)."""
        if self.store_scheme != "s3":
            raise ValueError("not an s3:// store")
        return self.store.removeprefix("s3://").partition("/")[2]

    def s3_client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for aiobotocore's `create_client("s3", ...)`."""
        kwargs: dict[str, str] = {}
        if self.s3_endpoint_url:
            kwargs["endpoint_url"] = self.s3_endpoint_url
        if self.s3_region:
            kwargs["region_name"] = self.s3_region
        return kwargs

    def signing_key(self) -> bytes | None:
        """The PEM private key that signs snapshot indexes, as loaded by `load_settings`."""
        return None if self._signing_key is None else self._signing_key.get_secret_value()

    def with_signing_key(self, pem: bytes | None) -> Snapshots:
        """A copy of these settings holding *pem* as the signing key."""
        copy = self.model_copy()
        copy._signing_key = None if pem is None else SecretBytes(pem)
        return copy


class Drills(BaseModel):
    """Scheduled restore drills and the RTO/RPO targets they are judged against."""

    model_config = _MODEL_CONFIG

    target: Name
    interval: Interval = timedelta(hours=24)
    sample: int = Field(0, ge=0, le=10_000_000)
    rto: Interval = timedelta(hours=4)
    rpo: Interval = timedelta(hours=1)
    report_dir: ConfigPath = Path("/var/lib/drd/reports")
    trust: Name | None = None
    mode: Literal["restore", "replica"] = "restore"
    replica: Name | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mode == "replica" and self.replica is None:
            raise _Invalid([("replica", 'mode = "replica" needs the replica endpoint to check')])
        if self.mode == "restore" and self.replica is not None:
            raise _Invalid([("replica", 'applies only with mode = "replica"')])
        return self


def default_state_dir() -> Path:
    """
    systemd's ``$STATE_DIRECTORY`` (the unit's ``StateDirectory=``; the first, if several),
    else ``/var/lib/drd``: a config that names no state_dir follows the unit.
    """
    return Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "/var/lib/drd")


class Failover(BaseModel):
    """What `drd failover` runs and records."""

    model_config = _MODEL_CONFIG

    hooks: list[Hook] = Field(default_factory=list, max_length=64)
    overrides_file: ConfigPath = Field(
        default_factory=lambda: default_state_dir() / "overrides.json"
    )
    max_drill_age: Interval = timedelta(hours=48)


class Daemon(BaseModel):
    """The long-running service: HTTP listener, state directory, shutdown."""

    model_config = _MODEL_CONFIG

    listen: str = Field("127.0.0.1:9477", max_length=300)
    state_dir: ConfigPath = Field(default_factory=default_state_dir)
    # This node's name in a cluster (leases, drd status); default "<host>:<pid>".
    node: str = Field("", max_length=128)
    webhook_token_file: ConfigPath | None = None
    drain_timeout: Duration = timedelta(seconds=60)
    jitter: float = Field(0.1, ge=0, le=0.5)
    # The listener: a client has header_timeout for each request head (and the TLS
    # handshake), body_timeout for a webhook body; max_connections caps open connections.
    header_timeout: Interval = timedelta(seconds=10)
    body_timeout: Interval = timedelta(seconds=30)
    max_connections: int = Field(64, ge=1, le=100_000)
    tls_cert_file: ConfigPath | None = None
    tls_key_file: ConfigPath | None = None
    tls_client_ca_file: ConfigPath | None = None  # set: clients must present a cert it signed

    _webhook_token: SecretStr | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _tls_complete(self) -> Self:
        problems = []
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            missing = "tls_key_file" if self.tls_key_file is None else "tls_cert_file"
            problems.append((missing, "tls_cert_file and tls_key_file go together"))
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            problems.append(("tls_client_ca_file", "needs tls_cert_file and tls_key_file"))
        if problems:
            raise _Invalid(problems)
        return self

    @property
    def tls(self) -> bool:
        """Whether the listener serves HTTPS."""
        return self.tls_cert_file is not None

    @field_validator("listen")
    @classmethod
    def _normal_listen(cls, value: str) -> str:
        host, sep, port = value.strip().rpartition(":")
        if not sep or not port.isdigit() or len(port) > 5 or int(port) > 65535:
            raise ValueError('must be "host:port", e.g. "127.0.0.1:9477" or "[::1]:9477"')
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError("host is not a valid IPv6 address") from None
        else:
            _check_host(host.lower())
        return _netloc(host.lower(), int(port))

    @property
    def node_name(self) -> str:
        """`node`, or "<host>:<pid>" when unset: unique per process either way."""
        return self.node or f"{socket.gethostname()}:{os.getpid()}"

    @property
    def node_label(self) -> str:
        """This node's ``node`` label on its metrics: `node`, else the host name (stable)."""
        return self.node or socket.gethostname()

    @property
    def listen_host(self) -> str:
        """The host to bind, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def webhook_token(self) -> SecretStr | None:
        """The token webhook callers must present, as loaded by `load_settings`."""
        return self._webhook_token

    def with_webhook_token(self, token: SecretStr | None) -> Daemon:
        """A copy of these settings expecting *token* on the webhook."""
        copy = self.model_copy()
        copy._webhook_token = token
        return copy


class StateDatabase(BaseModel):
    """
    Where the state lives: absent, a SQLite file in `daemon.state_dir` (one node); with
    `url`, a PostgreSQL database every node of a cluster shares. The password comes from
    `password_file` or `DRD_STATE__PASSWORD`, never from the URL.
    """

    model_config = _MODEL_CONFIG

    url: str | None = Field(None, max_length=2048)
    password_file: ConfigPath | None = None
    ca_file: ConfigPath | None = None
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None
    # Without TLS material: "verify-full" against the system's roots off loopback,
    # "prefer" on loopback; `insecure = true` accepts any server certificate.
    insecure: bool = False
    pool_size: int = Field(4, ge=1, le=100)
    connect_timeout: float = Field(10.0, gt=0, le=300)
    # How long a node's claim on a unit of work outlives its last heartbeat.
    lease_ttl: Interval = timedelta(seconds=30)

    _password: SecretStr | None = PrivateAttr(None)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Messages here never quote the URL: a password pasted into it must not reach a log.
        try:
            parts = urlsplit(value.strip())
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            raise ValueError("is not a valid URL (check the host and port)") from None
        if parts.scheme.lower() not in ("postgresql", "postgres"):
            raise ValueError('must start with postgresql://, e.g. "postgresql://drd@db:5432/drd"')
        if parts.password is not None:
            raise ValueError("must not contain a password: use password_file")
        if not parts.hostname:
            raise ValueError("has no host")
        if parts.fragment:
            raise ValueError("must not have a fragment")
        if any(
            key.lower() in ("password", "passfile")
            for key, _ in parse_qsl(parts.query, keep_blank_values=True)
        ):
            raise ValueError("must not contain a password: use password_file")
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[str, str]] = []
        if self.url is None:
            for field in ("password_file", "ca_file", "cert_file", "key_file"):
                if getattr(self, field) is not None:
                    problems.append((field, "applies only with url (a PostgreSQL database)"))
        if self.key_file is not None and self.cert_file is None:
            problems.append(("key_file", "a client key needs cert_file"))
        if problems:
            raise _Invalid(problems)
        return self

    @property
    def sslmode(self) -> str:
        """libpq's sslmode for these settings."""
        if self.insecure:
            return "require" if self.cert_file is not None else "prefer"
        if self.ca_file is not None:
            return "verify-full"
        host = urlsplit(self.url or "").hostname or ""
        return "prefer" if _is_loopback(host) else "verify-full"

    def password(self) -> SecretStr | None:
        """The password `load_settings` read (file or environment); None: none needed."""
        return self._password

    def with_password(self, password: SecretStr | None) -> StateDatabase:
        """A copy of these settings logging in with *password*."""
        copy = self.model_copy()
        copy._password = password
        return copy


class RetrySettings(BaseModel):
    """How one registry or S3 request is retried."""

    model_config = _MODEL_CONFIG

    attempts: int = Field(5, ge=1, le=100)
    budget: Interval = timedelta(seconds=60)
    wait_initial: float = Field(0.2, ge=0, le=3600)
    wait_max: float = Field(10.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.wait_max < self.wait_initial:
            raise _Invalid([("wait_max", "must be at least wait_initial")])
        return self

    @property
    def budget_s(self) -> float:
        return self.budget.total_seconds()


def _merge_indexed(base: Any, override: Any) -> Any:
    """Merge an override into *base*, where {"0": {...}} edits item 0 of a list."""
    if isinstance(override, dict) and isinstance(base, list):
        if not all(isinstance(key, str) and key.isdigit() for key in override):
            return override
        merged = list(base)
        for key, value in override.items():
            index = int(key)
            if index >= len(merged):
                return override  # left for validation to reject, naming the variable
            if isinstance(value, dict):
                value = {field: _json_or_text(item) for field, item in value.items()}
            merged[index] = _merge_indexed(merged[index], value)
        return merged
    if isinstance(override, dict) and isinstance(base, dict):
        return {**base, **{key: _merge_indexed(base.get(key), v) for key, v in override.items()}}
    return override


def _json_or_text(value: Any) -> Any:
    # pydantic-settings decodes JSON only for fields it can see; inside a list item it cannot.
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        with contextlib.suppress(ValueError, RecursionError):
            return json.loads(value)
    return value


class _EnvOverrides(EnvSettingsSource):
    """DRD_* variables, where `DRD_REPLICATION__<i>__<KEY>` edits one entry of the file's list."""

    def __init__(self, settings_cls: type[BaseSettings], file_values: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._file_values = file_values

    def __call__(self) -> dict[str, Any]:
        values = {
            key: _merge_indexed(self._file_values.get(key), value)
            for key, value in super().__call__().items()
        }
        state = values.get("state")
        if isinstance(state, dict):
            # DRD_STATE__PASSWORD is a secret the loader reads, not a key of [state].
            values["state"] = {k: v for k, v in state.items() if k != "password"}
        return values


class Settings(BaseSettings):
    """The whole configuration. Build it with `load_settings`, which also reads the secrets."""

    model_config = SettingsConfigDict(
        env_prefix="DRD_",
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        hide_input_in_errors=True,
    )

    version: Literal[1]
    endpoints: dict[Name, Endpoint] = Field(min_length=1, max_length=256)
    trust: dict[Name, Trust] = Field(default_factory=dict, max_length=256)
    replication: list[Replication] = Field(default_factory=list, max_length=1000)
    snapshots: Snapshots | None = None
    drills: Drills | None = None
    failover: Failover = Field(default_factory=Failover)
    daemon: Daemon = Field(default_factory=Daemon)
    state: StateDatabase = Field(default_factory=StateDatabase)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    log_level: str = Field("info", max_length=16)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment over file, and nothing else: no .env files, no secrets directory.
        file_values = (
            init_settings.init_kwargs if isinstance(init_settings, InitSettingsSource) else {}
        )
        return (_EnvOverrides(settings_cls, file_values), init_settings)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        if isinstance(value, bool):  # TOML `true` is not the number 1
            raise PydanticCustomError("version", "must be 1")
        return 1 if isinstance(value, str) and value.strip() == "1" else value

    @field_validator("endpoints", "trust", mode="before")
    @classmethod
    def _named_tables(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        return {
            key: {"name": key, **table} if isinstance(table, dict) else table
            for key, table in value.items()
        }

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return level

    @model_validator(mode="after")
    def _references(self) -> Self:
        problems = _reference_problems(self)
        if problems:
            raise _Invalid(problems)
        return self


def credential_env(endpoint: str) -> str:
    """The prefix of an endpoint's secret variables: "dr-east" → "DRD_ENDPOINT_DR_EAST"."""
    return "DRD_ENDPOINT_" + endpoint.upper().replace("-", "_")


def _listing(names: Iterable[str]) -> str:
    shown = sorted(names)
    text = ", ".join(shown[:20]) + (", ..." if len(shown) > 20 else "")
    return text or "none"


def _reference_problems(settings: Settings) -> list[tuple[str, str]]:
    """Names that point nowhere, clash or repeat. Pure."""
    problems: list[tuple[str, str]] = []
    endpoints, trust = settings.endpoints, settings.trust

    def endpoint(path: str, name: str | None) -> None:
        if name is not None and name not in endpoints:
            problems.append((path, f"unknown endpoint {name!r} (defined: {_listing(endpoints)})"))

    def policy(path: str, name: str | None) -> None:
        if name is not None and name not in trust:
            problems.append((path, f"unknown trust policy {name!r} (defined: {_listing(trust)})"))

    variables: dict[str, str] = {}
    for key, ep in endpoints.items():
        if ep.name != key:
            problems.append((f"endpoints.{key}.name", "must equal the table name or be omitted"))
        other = variables.setdefault(credential_env(key), key)
        if other != key:
            clash = f"shares the variables {credential_env(key)}_* with endpoint {other!r}"
            problems.append((f"endpoints.{key}", clash))
    for key, table in trust.items():
        if table.name != key:
            problems.append((f"trust.{key}.name", "must equal the table name or be omitted"))
    first: dict[str, int] = {}
    for index, rule in enumerate(settings.replication):
        path = f"replication[{index}]"
        if first.setdefault(rule.name, index) != index:
            where = f"replication[{first[rule.name]}]"
            problems.append((f"{path}.name", f"policy {rule.name!r} is already defined in {where}"))
        endpoint(f"{path}.source", rule.source)
        for position, target in enumerate(rule.targets):
            endpoint(f"{path}.targets[{position}]", target)
        policy(f"{path}.require_signature", rule.require_signature)
        if rule.propagate_deletions and settings.snapshots is None:
            problems.append(
                (
                    f"{path}.propagate_deletions",
                    "needs a [snapshots] store: what a pass deletes at a target is recorded "
                    "in a snapshot first, so that `drd restore` can bring it back",
                )
            )
    if settings.snapshots is not None:
        endpoint("snapshots.source", settings.snapshots.source)
        if settings.snapshots.store_scheme == "oci":
            endpoint("snapshots.store", settings.snapshots.oci_endpoint_name)
    if settings.drills is not None:
        endpoint("drills.target", settings.drills.target)
        endpoint("drills.replica", settings.drills.replica)
        policy("drills.trust", settings.drills.trust)
    return problems


# --- loading -----------------------------------------------------------------------------------


def _ambient_docker_config() -> Path | None:
    """``$DOCKER_CONFIG/config.json`` when the variable is set and the file exists."""
    base = os.environ.get("DOCKER_CONFIG")
    path = Path(base) / "config.json" if base else None
    return path if path is not None and path.is_file() else None


def config_path(path: Path | None = None) -> Path:
    """The config file to read: *path*, else `$DRD_CONFIG`, else /etc/drd/drd.toml."""
    if path is not None:
        return path
    configured = os.environ.get("DRD_CONFIG")
    return Path(configured) if configured else DEFAULT_CONFIG_PATH


def load_settings(path: Path | None = None) -> Settings:
    """
    Read, validate and resolve the configuration, and load every secret it names.

    Raises:
        ConfigError: listing every problem found, each with its dotted path.
    """
    where = config_path(path)
    return parse_settings(_read_toml(where), base_dir=where.parent, source=str(where))


def parse_settings(
    data: Mapping[str, Any], *, base_dir: Path, source: str = "configuration"
) -> Settings:
    """
    Validate already-parsed TOML *data* plus the environment, then load the files it names.

    Relative paths resolve against *base_dir* (credential files against
    `$CREDENTIALS_DIRECTORY` first). Raises `ConfigError`.
    """
    hidden = sorted(str(key) for key in data if str(key).startswith("_"))
    if hidden:
        # Keys such as `_env_file` would reach pydantic-settings as options, not as fields.
        errors = [(_short(key), "extra inputs are not permitted") for key in hidden]
        raise ConfigError(_summary(source, errors), errors=errors)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        errors = _hinted(
            [item for error in exc.errors(include_url=False) for item in _explain(error, Settings)],
            data,
        )
        raise ConfigError(_summary(source, errors), errors=errors) from exc
    except SettingsError as exc:
        found = re.search(r'field "([^"]+)"', str(exc))
        field = found.group(1) if found else "environment"
        message = f"cannot parse the DRD_{field.upper()} environment variable(s) as JSON"
        raise ConfigError(_summary(source, [(field, message)]), errors=[(field, message)]) from exc
    except RecursionError as exc:
        errors = [("", "the configuration is nested too deeply")]
        raise ConfigError(_summary(source, errors), errors=errors) from exc
    return _FileLoader(base_dir, os.environ, source).load(settings)


def _read_toml(where: Path) -> dict[str, Any]:
    try:
        raw = _read_bounded(where, _MAX_CONFIG_BYTES)
        return tomllib.loads(raw.decode("utf-8"))
    except _Unreadable as exc:
        reason = f"config file {exc}"
    except UnicodeDecodeError:
        reason = "config file is not valid UTF-8"
    except tomllib.TOMLDecodeError as exc:
        reason = f"invalid TOML: {_lower_first(str(exc))}"
    except RecursionError:
        reason = "invalid TOML: nested too deeply"
    raise ConfigError(f"{where}: {reason}", errors=[(str(where), reason)])


class _Unreadable(Exception):
    """Why a file cannot be used; the text follows the file's path in a message."""


def _read_bounded(path: Path, limit: int) -> bytes:
    """Read a regular file of at most *limit* bytes; FIFOs and devices are refused."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise _Unreadable("is not a regular file")
        if info.st_size > limit:
            raise _Unreadable(f"is larger than {limit} bytes")
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise _Unreadable("does not exist") from None
    except PermissionError:
        raise _Unreadable("is not readable: permission denied") from None
    except OSError as exc:
        raise _Unreadable(f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    except ValueError:
        raise _Unreadable("is not a valid path") from None
    if len(data) > limit:
        raise _Unreadable(f"is larger than {limit} bytes")
    return data


_M = TypeVar("_M", bound=BaseModel)
# Credential files: a relative path is looked up in $CREDENTIALS_DIRECTORY first.
_SECRET_PATHS = frozenset(
    {
        "password_file",
        "token_file",
        "docker_config",
        "key_file",
        "webhook_token_file",
        "signing_key_file",
        "tls_key_file",
    }
)


class _FileLoader:
    """Resolve paths and read the files a validated `Settings` names, collecting problems."""

    def __init__(self, base_dir: Path, environ: Mapping[str, str], source: str) -> None:
        self._base = base_dir.absolute()
        credentials = environ.get("CREDENTIALS_DIRECTORY")
        self._credentials_dir = Path(credentials).absolute() if credentials else None
        self._environ = environ
        self._source = source
        self.problems: list[tuple[str, str]] = []

    def load(self, settings: Settings) -> Settings:
        update: dict[str, Any] = {
            "endpoints": {key: self._endpoint(ep) for key, ep in settings.endpoints.items()},
            "trust": {key: self._trust(table) for key, table in settings.trust.items()},
            "failover": self._paths(settings.failover),
            "daemon": self._daemon(self._paths(settings.daemon)),
            "state": self._state(self._paths(settings.state)),
        }
        if settings.snapshots is not None:
            snapshots = self._snapshots(self._paths(settings.snapshots))
            if snapshots.store_scheme == "oci":
                # The store speaks to that endpoint as drd does: same URL, TLS, credentials.
                ep = update["endpoints"].get(snapshots.oci_endpoint_name)
                snapshots = snapshots.with_store_endpoint(ep)
            update["snapshots"] = snapshots
        if settings.drills is not None:
            update["drills"] = self._paths(settings.drills)
        if self.problems:
            errors = _hinted(self.problems)
            raise ConfigError(_summary(self._source, errors), errors=errors)
        return settings.model_copy(update=update)

    def _resolve(self, path: Path, secret: bool) -> Path:
        with contextlib.suppress(RuntimeError):  # no home for "~": keep the path as written
            path = path.expanduser()
        if path.is_absolute():
            return path
        if secret and self._credentials_dir is not None:
            return self._credentials_dir / path
        return self._base / path

    def _paths(self, model: _M) -> _M:
        update: dict[str, Any] = {}
        for field, value in model:
            secret = field in _SECRET_PATHS
            if isinstance(value, Path):
                update[field] = self._resolve(value, secret)
            elif isinstance(value, list) and value and all(isinstance(v, Path) for v in value):
                update[field] = [self._resolve(item, secret) for item in value]
        return model.model_copy(update=update)

    def _read(self, path: Path, where: str, limit: int) -> bytes | None:
        try:
            return _read_bounded(path, limit)
        except _Unreadable as exc:
            self.problems.append((where, f"{path} {exc}"))
            return None

    def _secret_text(self, raw: bytes | str, where: str, label: str) -> SecretStr | None:
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            self.problems.append((where, f"{label} is not valid UTF-8"))
            return None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            self.problems.append((where, f"{label} is empty"))
        elif any(char in text for char in "\r\n\0"):
            self.problems.append((where, f"{label} must hold one line (a line break remains)"))
        else:
            return SecretStr(text)
        return None

    def _secret(self, variable: str, path: Path | None, where: str) -> tuple[SecretStr | None, str]:
        """The secret from *variable* if set (it wins), else from the file at *path*."""
        if (value := self._environ.get(variable)) is not None:
            return self._secret_text(value, where.rpartition(".")[0], variable), variable
        if path is None:
            return None, ""
        raw = self._read(path, where, _MAX_SECRET_BYTES)
        return (None if raw is None else self._secret_text(raw, where, str(path))), str(path)

    def _endpoint(self, ep: Endpoint) -> Endpoint:
        ep = self._paths(ep)
        where = f"endpoints.{ep.name}"
        for field in ("ca_file", "cert_file", "key_file"):
            if (path := getattr(ep, field)) is not None:
                self._read(path, f"{where}.{field}", _MAX_PEM_BYTES)
        return ep.with_credentials(self._credentials(ep, where))

    def _credentials(self, ep: Endpoint, where: str) -> Credentials | None:
        prefix = credential_env(ep.name)
        count = len(self.problems)
        token, token_from = self._secret(f"{prefix}_TOKEN", ep.token_file, f"{where}.token_file")
        password, password_from = self._secret(
            f"{prefix}_PASSWORD", ep.password_file, f"{where}.password_file"
        )
        if len(self.problems) > count:
            return None
        if token is not None and password is not None:
            self.problems.append((where, f"both a token ({token_from}) and a password are set"))
        elif token is not None and ep.username is not None:
            self.problems.append((f"{where}.username", "does not apply to token authentication"))
        elif token is not None:
            return Credentials(token=token, source=token_from)
        elif password is not None and ep.username is None:
            self.problems.append((f"{where}.username", f"is required with {password_from}"))
        elif password is not None and ep.username is not None:
            return Credentials(username=ep.username, password=password, source=password_from)
        elif ep.username is not None:
            message = f"has no password: set password_file or {prefix}_PASSWORD"
            self.problems.append((f"{where}.username", message))
        elif ep.docker_config is not None:
            return self._docker_credentials(ep.docker_config, ep.host, f"{where}.docker_config")
        elif (ambient := _ambient_docker_config()) is not None:
            # Like docker and skopeo: $DOCKER_CONFIG/config.json when nothing else is set.
            return self._docker_credentials(ambient, ep.host, "DOCKER_CONFIG")
        return None

    def _docker_credentials(self, path: Path, host: str, where: str) -> Credentials | None:
        raw = self._read(path, where, _MAX_DOCKER_CONFIG_BYTES)
        if raw is None:
            return None
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            self.problems.append((where, f"{path} is not valid JSON"))
            return None
        try:
            return _docker_entry(document, host, str(path))
        except _DockerConfigUnusable as exc:
            self.problems.append((where, f"{path}: {exc}"))
            return None

    def _trust(self, table: Trust) -> Trust:
        table = self._paths(table)
        where = f"trust.{table.name}"
        keys = self._pems(table.keys, f"{where}.keys")
        rekor = self._pems(table.rekor_keys, f"{where}.rekor_keys")
        fulcio = self._pems(table.fulcio_roots, f"{where}.fulcio_roots")
        ctlog = self._pems(table.ctlog_keys, f"{where}.ctlog_keys")
        root = self._sigstore_root(table.sigstore_root, f"{where}.sigstore_root")
        roots = self._certificates(table.notation_roots, f"{where}.notation_roots")
        tsa = self._certificates(table.notation_tsa_roots, f"{where}.notation_tsa_roots")
        policy = None
        if table.notation_policy is not None:
            policy = self._notation_policy(table.notation_policy, f"{where}.notation_policy")
        loaded = table.with_pems(keys, rekor, fulcio=fulcio, ctlog=ctlog, sigstore_root=root)
        self._parse_trust(loaded, where)
        return loaded.with_notation(roots, policy, tsa)

    def _sigstore_root(self, value: str | None, where: str) -> tuple[str, bytes] | None:
        if value is None:
            return None
        # Imported on use: configs without keyless trust never load cryptography here.
        from drd.trust.sigstore_root import PUBLIC_GOOD, public_good_json

        if value == PUBLIC_GOOD:
            return PUBLIC_GOOD, public_good_json()
        path = self._resolve(Path(value), secret=False)
        data = self._read(path, where, _MAX_PEM_BYTES)
        return None if data is None else (str(path), data)

    def _parse_trust(self, table: Trust, where: str) -> None:
        """Parse every key, certificate and root now, so config check names a bad one."""
        from drd.trust.fulcio import authority_from_pem
        from drd.trust.keys import load_public_key
        from drd.trust.sigstore_root import load_sigstore_root

        groups: list[tuple[str, list[tuple[str, bytes]], Any]] = [
            ("keys", table.key_pems(), load_public_key),
            ("rekor_keys", table.rekor_pems(), load_public_key),
            ("fulcio_roots", table.fulcio_pems(), authority_from_pem),
            ("ctlog_keys", table.ctlog_pems(), load_public_key),
        ]
        for field, loaded, parse in groups:
            for index, (source, pem) in enumerate(loaded):
                try:
                    parse(pem, source)
                except ConfigError as exc:
                    self.problems.append((f"{where}.{field}[{index}]", str(exc)))
        if (root := table.sigstore_root_json()) is not None:
            try:
                load_sigstore_root(root[1], root[0])
            except ConfigError as exc:
                self.problems.append((f"{where}.sigstore_root", str(exc)))

    def _certificates(self, paths: list[Path], where: str) -> list[tuple[str, bytes]]:
        from drd.trust.notation_trust import load_certificates

        loaded: list[tuple[str, bytes]] = []
        for index, path in enumerate(paths):
            data = self._read(path, f"{where}[{index}]", _MAX_PEM_BYTES)
            if data is None:
                continue
            try:
                load_certificates(data, str(path))
            except ConfigError as exc:
                self.problems.append((f"{where}[{index}]", str(exc)))
                continue
            loaded.append((str(path), data))
        return loaded

    def _notation_policy(self, path: Path, where: str) -> tuple[bytes, dict[str, bytes]] | None:
        """Notation's trustpolicy.json and every file under ``truststore/x509`` beside it."""
        from drd.trust.notation_trust import read_trust_policy

        document = self._read(path, where, _MAX_PEM_BYTES)
        if document is None:
            return None
        base = path.parent / "truststore" / "x509"
        store: dict[str, bytes] = {}
        if base.is_dir():
            for file in sorted(base.glob("*/*/*")):
                if file.is_file() and len(store) < _MAX_TRUST_STORE_FILES:
                    data = self._read(file, where, _MAX_PEM_BYTES)
                    if data is not None:
                        store[file.relative_to(base).as_posix()] = data
        try:
            read_trust_policy(document, store, str(path))
        except ConfigError as exc:
            self.problems.append((where, str(exc)))
            return None
        return document, store

    def _pems(self, paths: list[Path], where: str) -> list[tuple[str, bytes]]:
        loaded: list[tuple[str, bytes]] = []
        for index, path in enumerate(paths):
            data = self._pem(path, f"{where}[{index}]")
            if data is not None:
                loaded.append((str(path), data))
        return loaded

    def _pem(self, path: Path, where: str) -> bytes | None:
        data = self._read(path, where, _MAX_PEM_BYTES)
        if data is not None and b"-----BEGIN " not in data:
            self.problems.append((where, f"{path} is not a PEM file"))
            return None
        return data

    def _snapshots(self, snapshots: Snapshots) -> Snapshots:
        if snapshots.signing_key_file is None:
            return snapshots
        pem = self._pem(snapshots.signing_key_file, "snapshots.signing_key_file")
        return snapshots.with_signing_key(pem)

    def _daemon(self, daemon: Daemon) -> Daemon:
        for field in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
            if (path := getattr(daemon, field)) is not None:
                self._pem(path, f"daemon.{field}")
        where = "daemon.webhook_token_file"
        token, _ = self._secret("DRD_WEBHOOK_TOKEN", daemon.webhook_token_file, where)
        return daemon.with_webhook_token(token)

    def _state(self, state: StateDatabase) -> StateDatabase:
        for field in ("ca_file", "cert_file", "key_file"):
            if (path := getattr(state, field)) is not None:
                self._read(path, f"state.{field}", _MAX_PEM_BYTES)
        if state.url is None:
            return state
        where = "state.password_file"
        password, _ = self._secret("DRD_STATE__PASSWORD", state.password_file, where)
        return state.with_password(password)


class _DockerConfigUnusable(Exception):
    """Why a docker config.json gives no credentials for a host."""


_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def _auth_host(key: str) -> str:
    """The host[:port] of a docker config `auths` key ("https://host/v1/" → "host")."""
    if "://" in key:
        key = key.split("://", 1)[1]
    host = key.split("/", 1)[0].lower()
    return "docker.io" if host in _DOCKER_HUB else host


def _docker_entry(document: Any, host: str, source: str) -> Credentials:
    """Credentials for *host* from a parsed docker config.json, or why there are none."""
    if not isinstance(document, dict):
        raise _DockerConfigUnusable("is not a docker config object")
    auths = document.get("auths") or {}
    if not isinstance(auths, dict):
        raise _DockerConfigUnusable('"auths" is not an object')
    wanted = _auth_host(host)
    entry = next((v for k, v in auths.items() if _auth_host(str(k)) == wanted), None)
    if not isinstance(entry, dict):
        if document.get("credsStore") or wanted in (document.get("credHelpers") or {}):
            raise _DockerConfigUnusable(
                f"credentials for {host} are in a credential helper, not supported"
            )
        raise _DockerConfigUnusable(f"has no credentials for {host}")
    for key in ("registrytoken", "identitytoken"):
        if isinstance(token := entry.get(key), str) and token:
            return Credentials(token=SecretStr(token), source=source)
    username, password = entry.get("username"), entry.get("password")
    if isinstance(auth := entry.get("auth"), str) and auth:
        try:
            username, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise _DockerConfigUnusable(
                f'the "auth" entry for {host} is not base64 of user:password'
            )
    if isinstance(username, str) and username and isinstance(password, str) and password:
        return Credentials(username=username, password=SecretStr(password), source=source)
    raise _DockerConfigUnusable(f"the entry for {host} has no usable credentials")
