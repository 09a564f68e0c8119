"""
Hostile input: drd says no clearly, sends nothing it should not, and writes nothing.

Registries are real (distribution 2.8) behind a `FaultProxy` that serves what a
hostile or broken registry would: manifests that are not JSON, too large, nested too
deep, lying about sizes or digests; tag lists and ``Link`` headers that loop or point
away; auth challenges naming a foreign realm; redirects to a foreign host. A
`Recorder` plays the foreign host and tells what reached it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from drd.config import Credentials
from drd.daemon.http import PayloadError, parse_push_events
from drd.errors import (
    DigestMismatch,
    InvalidReference,
    RegistryError,
    SnapshotCorrupt,
    Unauthorized,
)
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.oci.ref import Ref, validate_repository, validate_tag
from drd.registry.client import RegistryClient
from drd.registry.transport import TLSSettings, build_http_client
from drd.replicate.report import PolicyReport
from drd.replicate.runner import run_policy
from drd.retry import RetryPolicy
from drd.snapshot.model import parse_index
from tests.clients import open_client, policy_for
from tests.faults import Fault, FaultProxy, Recorder, fault_proxy, with_headers
from tests.images import make_image, push_image
from tests.reliability.consistency import check_target
from tests.security.conftest import HOSTILE_INPUTS
from tests.servers import LocalRegistry

RETRY = RetryPolicy.no_wait(attempts=2)
CREDS = Credentials(username="drd", password=SecretStr("h0stile-Realm-pw"))


# ---------------------------------------------------------------------------
# references and digests (pure)

BAD_DIGESTS = [
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "sha256+b64:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    "SHA256:" + "a" * 64,
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "A" * 64,
    "sha256:" + "g" * 64,
    "sha256:" + "٣" * 64,  # Arabic-Indic digits
    "sha256:" + "\uff41" * 64,  # fullwidth letters
    "sha256:../../../../etc/passwd",
    "sha256:" + "a" * 63 + "/",
    "sha512:" + "a" * 64,
    "sha256:",
    ":" + "a" * 64,
    "",
]
BAD_REPOSITORIES = [
    "../etc",
    "a/../b",
    "a/./b",
    "/abs/path",
    "a//b",
    "A/B",
    "a/b/",
    "ä/b",
    "a b",
    "a\x00b",
    "a" * 256,
    "a/b?x=1",
    "a/b#frag",
    "a%2F..%2Fb",
]
BAD_TAGS = [
    "..",
    "../x",
    "a/b",
    "-leading-dash",
    ".hidden",
    "a" * 129,
    "v1 beta",
    "v1?x",
    "v1#x",
    "tägli",
    "",
    "v1\x00",
]


@pytest.mark.parametrize("text", BAD_DIGESTS)
def test_bad_digests_are_refused_with_a_reason(text: str) -> None:
    """Bad algorithms, lengths, cases, unicode digits and paths are not digests."""
    HOSTILE_INPUTS.append(f"digest {text!r}")
    with pytest.raises(InvalidReference, match=r"digest"):
        Digest.parse(text)


@pytest.mark.parametrize("name", BAD_REPOSITORIES)
def test_bad_repository_names_are_refused(name: str) -> None:
    """Traversal, absolute paths, upper case, unicode and URL syntax are not repositories."""
    HOSTILE_INPUTS.append(f"repository {name!r}")
    with pytest.raises(InvalidReference, match="repository name"):
        validate_repository(name)


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_bad_tags_are_refused(tag: str) -> None:
    """Traversal, slashes, URL syntax and unicode are not tags."""
    HOSTILE_INPUTS.append(f"tag {tag!r}")
    with pytest.raises(InvalidReference, match="tag"):
        validate_tag(tag)


@pytest.mark.parametrize(
    ("check", "text"),
    [
        pytest.param(validate_tag, "v1\n", id="tag"),
        pytest.param(validate_repository, "team/app\n", id="repository"),
    ],
)
def test_a_trailing_newline_is_refused(check: Any, text: str) -> None:
    """A name followed by a newline is not a name."""
    with pytest.raises(InvalidReference):
        check(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_as_a_digest_exactly_or_not_at_all(text: str) -> None:
    """Digest.parse either refuses with InvalidReference or round-trips the text exactly."""
    HOSTILE_INPUTS.append("generated digest text")
    try:
        digest = Digest.parse(text)
    except InvalidReference:
        return
    assert str(digest) == text
    assert digest.algorithm in ("sha256", "sha512")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_an_accepted_repository_name_never_traverses(text: str) -> None:
    """An accepted repository name, whatever came in, has no '..' and no URL syntax."""
    HOSTILE_INPUTS.append("generated repository text")
    try:
        name = validate_repository(text)
    except InvalidReference:
        return
    parts = name.rstrip("\n").split("/")
    assert all(part and part not in (".", "..") for part in parts)
    assert not set(name) & set("?#%:@ \\")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_ref_parse_refuses_or_keeps_its_parts_in_the_grammar(text: str) -> None:
    """Ref.parse of anything refuses with InvalidReference or yields grammar-clean parts."""
    HOSTILE_INPUTS.append("generated reference text")
    try:
        ref = Ref.parse(text)
    except InvalidReference:
        return
    validate_repository(ref.repository)
    if ref.tag is not None:
        validate_tag(ref.tag)


async def test_hostile_references_are_refused_before_any_request(
    source_registry: LocalRegistry,
) -> None:
    """The client refuses a hostile repository, tag or digest without sending a request."""
    with fault_proxy(source_registry.url) as proxy:
        async with open_client(proxy.url, retry=RETRY) as client:
            for repo in ("../../v2/_catalog", "a/../../b"):
                with pytest.raises(InvalidReference):
                    await client.list_tags(repo)
            for ref in ("../../../x/manifests/latest", "v1/../../y", "sha256:zz"):
                HOSTILE_INPUTS.append(f"client reference {ref!r}")
                with pytest.raises(InvalidReference):
                    await client.head_manifest("ok/app", ref)
                with pytest.raises(InvalidReference):
                    await client.get_manifest("ok/app", ref)
    assert proxy.calls() == 0


# ---------------------------------------------------------------------------
# manifests served by a hostile source


def served(body: bytes, media_type: str = mediatype.OCI_INDEX) -> Fault:
    """Serve *body* as a manifest, with its true digest in ``Docker-Content-Digest``."""
    return Fault.respond(
        200,
        body,
        {
            "Content-Type": media_type,
            "Docker-Content-Digest": str(Digest.of(body)),
        },
    )


def entry(
    digest: Digest | str, size: int = 100, media: str = mediatype.OCI_MANIFEST
) -> dict[str, Any]:
    return {"mediaType": media, "digest": str(digest), "size": size}


def index_of(*entries: dict[str, Any]) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": list(entries)}
    ).encode()


def fake_digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def nested(depth: int) -> list[bytes]:
    """Indexes, each listing the next: the outermost first."""
    chain = [index_of(entry(fake_digest(0)))]
    for _ in range(depth):
        inner = chain[0]
        chain.insert(0, index_of(entry(Digest.of(inner), len(inner), mediatype.OCI_INDEX)))
    return chain


@pytest.fixture
def hostile_source(source_registry: LocalRegistry) -> Iterator[FaultProxy]:
    """A proxy in front of the source; each test installs what it serves."""
    with fault_proxy(source_registry.url, name="hostile-source") as proxy:
        yield proxy


async def replicate_from(proxy: FaultProxy, target: LocalRegistry, repo: str) -> PolicyReport:
    async with open_client(proxy.url, "source", RETRY) as src, open_client(target) as dst:
        return await run_policy(policy_for(repo), src, {"target": dst}, RETRY)


async def assert_nothing_written(target: LocalRegistry, repo: str) -> None:
    """No tag, and no manifest or blob linked, in *repo* at *target*."""
    result = await check_target(target, repo)
    assert result.tags == {}
    assert result.on_disk == 0, "objects were written"


def manifest_cases() -> list[Any]:
    chain = nested(12)
    too_many = index_of(*(entry(fake_digest(i)) for i in range(100_000)))
    many = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_INDEX,
            "manifests": [
                {"mediaType": "m", "digest": fake_digest(i), "size": 1} for i in range(20_000)
            ],
        },
        separators=(",", ":"),
    ).encode()
    return [
        pytest.param({"v1": b"{not json"}, "not valid JSON", id="invalid-json"),
        pytest.param({"v1": b"[" * 200_000}, "not valid JSON", id="deep-json-nesting"),
        pytest.param({"v1": b'"just a string"'}, "not a JSON object", id="not-an-object"),
        pytest.param(
            {"v1": json.dumps({"mediaType": mediatype.OCI_INDEX, "manifests": "x"}).encode()},
            "not a list",
            id="wrong-types",
        ),
        pytest.param({"v1": too_many}, "byte limit", id="100k-descriptors"),
        pytest.param({"v1": many}, "more than 10000 descriptors", id="20k-descriptors"),
        pytest.param(
            {"v1": chain[0], **{str(Digest.of(raw)): raw for raw in chain[1:]}},
            "nests deeper than",
            id="nested-12-deep",
        ),
        pytest.param(
            {"v1": index_of(entry("sha256:../../../../v2/_catalog"))},
            "digest",
            id="child-digest-with-a-path",
        ),
    ]


@pytest.mark.parametrize(("documents", "reason"), manifest_cases())
async def test_hostile_manifests_fail_the_item_and_write_nothing(
    documents: dict[str, bytes],
    reason: str,
    hostile_source: FaultProxy,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """A manifest that is not JSON, too large, too deep or malformed fails with a reason."""
    await push_image(source_registry, repo, make_image(repo), "v1")  # a real tag to list
    for reference, body in documents.items():
        for ref in {reference, str(Digest.of(body))}:
            path = f"/v2/{repo}/manifests/{ref}$"
            hostile_source.add(served(body), kinds=("manifest_head", "manifest_get"), path=path)
    HOSTILE_INPUTS.append(f"manifest: {reason}")

    report = await replicate_from(hostile_source, target_registry, repo)

    assert not report.ok
    [item] = report.items
    assert item.outcome == "failed"
    assert reason in item.reason, item.reason
    await assert_nothing_written(target_registry, repo)


async def test_a_child_served_as_its_parent_is_a_digest_mismatch(
    hostile_source: FaultProxy,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """
    A cycle through nested indexes needs a registry to lie about a child's bytes; the
    lie is caught by the digest, and nothing is written.
    """
    await push_image(source_registry, repo, make_image(repo), "v1")
    child = fake_digest(7)
    parent = index_of(entry(child, media=mediatype.OCI_INDEX))
    by_tag_or_digest = f"/(v1|{Digest.of(parent)})$"
    hostile_source.add(
        served(parent), kinds=("manifest_head", "manifest_get"), path=by_tag_or_digest
    )
    # The child "is" the parent again: a loop, were the digest not checked.
    hostile_source.add(served(parent), kinds="manifest_get", path=f"/{child}$")
    HOSTILE_INPUTS.append("manifest: cycle through a lying child")

    report = await replicate_from(hostile_source, target_registry, repo)

    [item] = report.items
    assert item.outcome == "failed"
    assert "hash to" in item.reason, item.reason
    await assert_nothing_written(target_registry, repo)


@pytest.mark.parametrize("delta", [-1, +1, +1_000_000], ids=["short", "long", "huge"])
async def test_sizes_that_lie_fail_the_copy_and_leave_no_blob(
    delta: int,
    hostile_source: FaultProxy,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """A layer whose descriptor size is wrong fails with a size mismatch; no blob lands."""
    image = make_image(repo, layer_size=64 * 1024)
    await push_image(source_registry, repo, image, "v1")
    doc = image.json()
    doc["layers"][0]["size"] += delta
    lying = json.dumps(doc).encode()
    hostile_source.add(
        served(lying, mediatype.OCI_MANIFEST), kinds=("manifest_head", "manifest_get")
    )
    HOSTILE_INPUTS.append(f"manifest: layer size {delta:+d}")

    report = await replicate_from(hostile_source, target_registry, repo)

    [item] = report.items
    assert item.outcome == "failed"
    assert item.error in ("SizeMismatch", "DigestMismatch"), item
    assert "bytes" in item.reason, item.reason
    result = await check_target(target_registry, repo)
    assert result.tags == {}
    async with open_client(target_registry) as dst:
        assert await dst.has_blob(repo, image.layers[0].digest) is None


# ---------------------------------------------------------------------------
# tag lists and Link headers


def link_to(url: str) -> Fault:
    return Fault.rewrite(with_headers(Link=f'<{url}>; rel="next"'), "link")


async def test_a_link_header_that_loops_is_an_error(
    hostile_source: FaultProxy,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """Pagination that comes back to a page already read stops with a clear error."""
    await push_image(source_registry, repo, make_image(repo), "v1")
    hostile_source.add(link_to(f"/v2/{repo}/tags/list?n=1000&last=v1"), kinds="tags_list")
    HOSTILE_INPUTS.append("Link loop")

    report = await replicate_from(hostile_source, target_registry, repo)

    assert "pagination loops" in report.error
    assert hostile_source.calls("tags_list") == 2
    await assert_nothing_written(target_registry, repo)


async def test_one_repository_the_source_cannot_list_does_not_stop_the_others(
    hostile_source: FaultProxy,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """A looping tags list fails its own repository; the others are still copied."""
    repos = [f"{repo}-{name}" for name in ("a", "b", "c")]
    images = {name: make_image(name) for name in repos}
    for name, image in images.items():
        await push_image(source_registry, name, image, "v1")
    broken = repos[1]
    loop = link_to(f"/v2/{broken}/tags/list?n=1000&last=v1")
    hostile_source.add(loop, kinds="tags_list", path=f"^/v2/{broken}/tags/list")

    async with (
        open_client(hostile_source.url, "source", RETRY) as src,
        open_client(target_registry) as dst,
    ):
        report = await run_policy(policy_for(*repos), src, {"target": dst}, RETRY)

    assert "pagination loops" in report.error
    assert report.error.endswith(f"(repository {broken})")
    assert sorted((i.repository, i.outcome) for i in report.items) == [
        (repos[0], "copied"),
        (repos[2], "copied"),
    ]
    for name in (repos[0], repos[2]):
        walked = await check_target(target_registry, name)
        assert walked.tags == {"v1": str(images[name].digest)}
    await assert_nothing_written(target_registry, broken)


@pytest.mark.parametrize("where", ["other-host", "other-scheme"])
async def test_a_link_header_to_another_host_is_not_followed(
    where: str,
    hostile_source: FaultProxy,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """A next page on another host (or scheme) is refused, and nothing is sent there."""
    await push_image(source_registry, repo, make_image(repo), "v1")
    with Recorder(body=b'{"tags":["stolen"]}') as foreign:
        url = (
            f"http://localhost:{foreign.port}/v2/{repo}/tags/list"
            if where == "other-host"
            else f"https://{hostile_source.host}/v2/{repo}/tags/list"
        )
        hostile_source.add(link_to(url), kinds="tags_list")
        HOSTILE_INPUTS.append(f"Link to {where}")
        report = await replicate_from(hostile_source, target_registry, repo)
        assert foreign.seen == []
    assert "pagination link to another host" in report.error
    await assert_nothing_written(target_registry, repo)


async def test_hostile_tag_names_are_dropped_not_followed(
    hostile_source: FaultProxy,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """
    Tag names that would traverse into another repository's URLs are dropped; the
    genuine tag is copied and nothing lands outside the repository.
    """
    image = make_image(repo)
    await push_image(source_registry, repo, image, "v1")
    evil = ["../../evil/app/manifests/pwned", "v1/../../x", "a?b=c", "%2e%2e"]
    body = json.dumps({"name": repo, "tags": ["v1", *evil]}).encode()
    hostile_source.add(
        Fault.respond(200, body, {"Content-Type": "application/json"}), kinds="tags_list"
    )
    HOSTILE_INPUTS.extend(f"tag name {t!r} in a tag list" for t in evil)

    report = await replicate_from(hostile_source, target_registry, repo)

    assert report.ok, report.to_json()
    assert [(i.tag, i.outcome) for i in report.items] == [("v1", "copied")]
    assert all("/" not in s.path.partition("/manifests/")[2] for s in hostile_source.requests())
    assert not target_registry.repository_dir("evil/app").exists()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"<html>busy</html>", "not JSON", id="html"),
        pytest.param(b'{"tags": [1, 2, 3]}', "malformed", id="numbers"),
        pytest.param(b'{"tags": "v1"}', "malformed", id="string"),
    ],
)
async def test_malformed_tag_lists_are_an_error(
    body: bytes,
    reason: str,
    hostile_source: FaultProxy,
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    repo: str,
) -> None:
    """A tag list that is not the expected JSON fails the pass with a reason."""
    await push_image(source_registry, repo, make_image(repo), "v1")
    hostile_source.add(
        Fault.respond(200, body, {"Content-Type": "application/json"}), kinds="tags_list"
    )
    HOSTILE_INPUTS.append(f"tag list: {reason}")

    report = await replicate_from(hostile_source, target_registry, repo)

    assert reason in report.error, report.error
    await assert_nothing_written(target_registry, repo)


# ---------------------------------------------------------------------------
# auth challenges and redirects: credentials stay home


def challenge(realm: str) -> Fault:
    header = f'Bearer realm="{realm}",service="registry",scope="repository:x:pull"'
    return Fault.respond(401, b"{}", {"WWW-Authenticate": header})


@pytest.mark.parametrize(
    "creds",
    [CREDS, Credentials(token=SecretStr("id-t0ken-Secret"))],
    ids=["basic", "identity-token"],
)
async def test_a_realm_on_another_host_gets_no_credentials(
    creds: Credentials, source_registry: LocalRegistry
) -> None:
    """A challenge naming a realm on another host is followed without our credentials."""
    with (
        Recorder(body=b'{"token": "from-elsewhere"}') as foreign,
        fault_proxy(source_registry.url) as proxy,
    ):
        proxy.add(challenge(f"http://localhost:{foreign.port}/token"), kinds="manifest_head")
        HOSTILE_INPUTS.append("realm on another host")
        async with build_http_client(TLSSettings()) as http:
            client = RegistryClient("src", proxy.url, http, RETRY, credentials=creds)
            with pytest.raises(Unauthorized):
                await client.head_manifest("some/app", "v1")
        assert foreign.seen, "the realm was not asked at all"
        assert foreign.authorization_headers == []
    # The registry saw at most the foreign token, never our own credentials.
    sent = {s.headers.get("Authorization") for s in proxy.requests()}
    assert sent <= {None, "Bearer from-elsewhere"}, sent


@pytest.mark.parametrize(
    "realm",
    ["file:///etc/passwd", "ftp://127.0.0.1/token", "javascript:alert(1)", "", "/token"],
    ids=["file", "ftp", "javascript", "empty", "relative"],
)
async def test_a_realm_that_is_not_http_is_refused(
    realm: str, source_registry: LocalRegistry
) -> None:
    """A realm with another scheme (or none) ends in Unauthorized, with nothing fetched."""
    with fault_proxy(source_registry.url) as proxy:
        proxy.add(challenge(realm), kinds="manifest_head")
        HOSTILE_INPUTS.append(f"realm {realm!r}")
        async with build_http_client(TLSSettings()) as http:
            client = RegistryClient("src", proxy.url, http, RETRY, credentials=CREDS)
            with pytest.raises(Unauthorized, match="unusable auth challenge"):
                await client.head_manifest("some/app", "v1")
    assert proxy.calls("token") == 0


async def test_a_huge_challenge_is_refused(source_registry: LocalRegistry) -> None:
    """A WWW-Authenticate header over 4 KiB is not parsed; the request fails as unauthorized."""
    with fault_proxy(source_registry.url) as proxy:
        header = 'Bearer realm="http://127.0.0.1/token",' + "x" * 5000
        proxy.add(Fault.respond(401, b"{}", {"WWW-Authenticate": header}), kinds="manifest_head")
        HOSTILE_INPUTS.append("5 KB challenge")
        async with build_http_client(TLSSettings()) as http:
            client = RegistryClient("src", proxy.url, http, RETRY, credentials=CREDS)
            with pytest.raises(Unauthorized, match="without a challenge"):
                await client.head_manifest("some/app", "v1")


async def test_a_redirect_to_another_host_carries_no_credentials(
    source_registry: LocalRegistry, repo: str
) -> None:
    """
    A blob GET redirected to another host (as S3-backed registries do) is followed
    without the Authorization header; the foreign bytes then fail their digest.
    """
    image = make_image(repo)
    await push_image(source_registry, repo, image, "v1")
    with Recorder(body=b"not the blob") as foreign, fault_proxy(source_registry.url) as proxy:
        proxy.add(
            Fault.respond(401, b"{}", {"WWW-Authenticate": 'Basic realm="r"'}),
            kinds="blob_get",
            times=1,
        )
        proxy.add(
            Fault.respond(307, b"", {"Location": f"http://localhost:{foreign.port}/blob"}),
            kinds="blob_get",
        )
        HOSTILE_INPUTS.append("redirect to another host")
        async with build_http_client(TLSSettings()) as http:
            client = RegistryClient("src", proxy.url, http, RETRY, credentials=CREDS)
            with pytest.raises(DigestMismatch, match="hashes to"):
                await client.get_blob_bytes(repo, image.config.digest, 1 << 20)
        assert foreign.seen
        assert foreign.authorization_headers == []
    sent = [s for s in proxy.requests("blob_get") if "Authorization" in s.headers]
    assert sent, "the registry itself should have had the credentials"


async def test_an_upload_location_on_another_host_is_refused(
    source_registry: LocalRegistry, repo: str
) -> None:
    """An upload URL on another host is refused with a clear error; nothing goes there."""
    with Recorder(status=202) as foreign, fault_proxy(source_registry.url) as proxy:
        proxy.add(
            Fault.respond(
                202, b"", {"Location": f"http://localhost:{foreign.port}/v2/{repo}/blobs/uploads/x"}
            ),
            kinds="upload_post",
        )
        HOSTILE_INPUTS.append("upload location on another host")
        async with open_client(proxy.url, retry=RETRY) as client:
            with pytest.raises(RegistryError, match="upload location on another host"):
                await client.upload_blob_bytes(repo, Digest.of(b"x"), b"x")
        assert foreign.seen == []


# ---------------------------------------------------------------------------
# webhook bodies and snapshot indexes (parsers fed anything)

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=40,
)
EVENTS = st.fixed_dictionaries(
    {
        "events": st.lists(
            st.fixed_dictionaries(
                {
                    "action": st.sampled_from(["push", "pull", "delete", ""]) | JSON,
                    "target": st.fixed_dictionaries(
                        {"repository": st.text(max_size=60) | JSON, "tag": st.text(max_size=60)}
                    )
                    | JSON,
                }
            ),
            max_size=5,
        )
    }
)


@settings(max_examples=150, deadline=None)
@given(EVENTS | JSON)
def test_any_webhook_body_is_parsed_or_refused(document: Any) -> None:
    """A webhook document is refused with PayloadError or yields only well-formed pushes."""
    HOSTILE_INPUTS.append("generated webhook body")
    try:
        pushes, ignored = parse_push_events(document)
    except PayloadError:
        return
    assert ignored >= 0
    for push in pushes:
        validate_repository(push.repository)
        validate_tag(push.tag)


@settings(max_examples=100, deadline=None)
@given(JSON | st.binary(max_size=200))
def test_any_snapshot_index_is_parsed_or_refused_as_corrupt(document: Any) -> None:
    """A stored index of any content is refused as SnapshotCorrupt, never with another error."""
    HOSTILE_INPUTS.append("generated snapshot index")
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    for data in (raw, gzip.compress(raw)):
        with pytest.raises(SnapshotCorrupt):
            parse_index(data, key="snapshots/src/2026/01/01/20260101T000000.000000Z.json.gz")


def test_a_truncated_or_trailing_snapshot_index_is_corrupt() -> None:
    """A gzip stream cut short, or one followed by more data, is not an index."""
    body = gzip.compress(json.dumps({"schema": 1}).encode())
    for data in (body[:-5], body + b"garbage"):
        HOSTILE_INPUTS.append("snapshot index: broken gzip")
        with pytest.raises(SnapshotCorrupt):
            parse_index(data)
