"""
Referrers to any depth, between real registries: through the fallback tags where the
source has no referrers API (distribution 2.8, for real), through the API where it has
one (the fault proxy answers the API in front of the real registry), and kept listed in
the target's fallback index when the target has no API. A fallback-form tag whose
subject the repository does not hold is an ordinary tag, copied byte-exact.
"""

from __future__ import annotations

import json
from pathlib import Path

from drd.config import load_settings
from drd.oci import mediatype
from drd.oci.digest import Digest
from drd.oci.manifest import Manifest
from drd.oci.referrers import fallback_tag, merge_fallback, referrer_entry
from drd.replicate.report import PolicyReport
from drd.replicate.runner import run_policy
from tests.clients import RETRY, open_client, policy_for
from tests.faults import Fault, fault_proxy
from tests.images import (
    Image,
    RegistryWriter,
    make_image,
    make_index,
    make_referrer,
    push_image,
    push_index,
)
from tests.replicate.test_trusted import push_signature, signed_layer
from tests.replicate.test_trusted import write_config as trusted_config
from tests.servers import LocalRegistry
from tests.skopeo import inspect_raw

SBOM_TYPE = "application/spdx+json"
SIG_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


async def replicate(
    source: str, target: LocalRegistry, repo: str, *, dry_run: bool = False
) -> tuple[PolicyReport, int]:
    """One untrusted pass of *repo* from the registry at *source*; report, target requests."""
    async with open_client(source, "source") as src, open_client(target, "target") as dst:
        report = await run_policy(policy_for(repo), src, {"target": dst}, RETRY, dry_run=dry_run)
    return report, dst.requests


async def raw_at(registry: LocalRegistry, repo: str, reference: str | Digest) -> bytes | None:
    """The bytes *registry* serves for *reference*, or None when absent."""
    async with RegistryWriter(registry) as w:
        if not await w.manifest_exists(repo, reference):
            return None
        raw, _ = await w.get_manifest(repo, reference)
    return raw


def chain(repo: str) -> tuple[Image, Image, Image, Image]:
    """An image, an SBOM referring to it, a signature on the SBOM, one on that signature."""
    image = make_image(f"{repo}/image")
    sbom = make_referrer(image, f"{repo}/sbom", artifact_type=SBOM_TYPE)
    signature = make_referrer(sbom, f"{repo}/sbom-sig", artifact_type=SIG_TYPE)
    counter = make_referrer(signature, f"{repo}/countersig", artifact_type=SIG_TYPE)
    return image, sbom, signature, counter


# --- pure ----------------------------------------------------------------------------------


def test_merge_fallback_keeps_what_is_listed_and_adds_what_is_missing() -> None:
    """Existing entries stay byte for byte and in order; nothing new means no write."""
    image = make_image("merge")
    one, two = make_referrer(image, "one"), make_referrer(image, "two")
    existing_raw = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": [one.descriptor()]}
    ).encode()
    existing = Manifest.parse(existing_raw, mediatype.OCI_INDEX)
    desc_one, desc_two = (Manifest.parse(r.raw).descriptor() for r in (one, two))

    assert merge_fallback(existing, [desc_one]) is None
    merged = merge_fallback(existing, [desc_two, desc_one, desc_two])
    assert merged is not None
    entries = json.loads(merged)["manifests"]
    assert entries[0] == one.descriptor()
    assert [e["digest"] for e in entries] == [str(one.digest), str(two.digest)]
    assert merge_fallback(None, [desc_one]) is not None
    assert referrer_entry(desc_one)["digest"] == str(one.digest)


# --- fallback tags: distribution 2.8 has no referrers API ----------------------------------


async def test_fallback_signatures_five_levels_down_are_replicated(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    v1 <- SBOM <- signature <- countersignature <- ... five levels, each listed in its
    subject's ``sha256-<hex>`` index at the source: every level and every index arrives,
    byte-exact (the attached rounds go deeper than three).
    """
    image = make_image(f"{repo}/image")
    levels = [make_referrer(image, f"{repo}/sbom", artifact_type=SBOM_TYPE)]
    for depth in range(4):
        levels.append(make_referrer(levels[-1], f"{repo}/sig-{depth}", artifact_type=SIG_TYPE))
    await push_image(source_registry, repo, image, "v1")
    subjects = [image, *levels[:-1]]
    for subject, referrer in zip(subjects, levels, strict=True):
        await push_image(source_registry, repo, referrer)
        raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mediatype.OCI_INDEX,
                "manifests": [referrer.descriptor()],
            }
        ).encode()
        async with RegistryWriter(source_registry) as w:
            await w.push_manifest(repo, fallback_tag(subject.digest), raw, mediatype.OCI_INDEX)

    report, _ = await replicate(source_registry.url, target_registry, repo)

    assert report.ok, report.to_json()
    for subject in subjects:
        tag = fallback_tag(subject.digest)
        assert inspect_raw(target_registry.host, repo, tag) == inspect_raw(
            source_registry.host, repo, tag
        )
    for referrer in levels:
        assert await raw_at(target_registry, repo, referrer.digest) == referrer.raw


async def test_a_fallback_tag_whose_subject_is_not_in_the_repository_is_an_ordinary_tag(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    ``sha256-<D>`` pushed where D is not (before D, or listing content kept elsewhere):
    still a tag of the source, copied byte-exact, and up to date on the next pass.
    """
    absent = make_image(f"{repo}/elsewhere")
    listing = make_index([make_image(f"{repo}/listed")])
    await push_image(source_registry, repo, make_image(f"{repo}/v1"), "v1")
    await push_index(source_registry, repo, listing, fallback_tag(absent.digest))

    first, _ = await replicate(source_registry.url, target_registry, repo)

    assert first.ok, first.to_json()
    tag = fallback_tag(absent.digest)
    assert {(i.tag, i.outcome) for i in first.items} == {("v1", "copied"), (tag, "copied")}
    assert inspect_raw(target_registry.host, repo, tag) == listing.raw
    again, _ = await replicate(source_registry.url, target_registry, repo)
    assert {(i.tag, i.outcome) for i in again.items} == {("v1", "skipped"), (tag, "skipped")}


# --- the referrers API at the source (emulated by the proxy in front of the real registry) --


async def test_api_referrers_to_any_depth_reach_a_target_without_the_api(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """
    Referrers pushed by digest only (no tag at all) are found through the source's API,
    three levels deep, copied byte-exact, and listed at the target (no API) in each
    subject's fallback index, merged with what that index already listed. A second
    pass writes nothing.
    """
    image, sbom, signature, counter = chain(repo)
    elsewhere = make_referrer(image, f"{repo}/already-listed")
    await push_image(target_registry, repo, elsewhere)
    already = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_INDEX,
            "manifests": [elsewhere.descriptor()],
        }
    ).encode()
    async with RegistryWriter(target_registry) as w:
        await w.push_manifest(repo, fallback_tag(image.digest), already, mediatype.OCI_INDEX)
    with fault_proxy(source_registry.url, emulate_referrers=True) as proxy:
        await push_image(proxy.url, repo, image, "v1")
        for referrer in (sbom, signature, counter):
            await push_image(proxy.url, repo, referrer)

        first, _ = await replicate(proxy.url, target_registry, repo)
        assert proxy.calls("referrers") >= 4
        second, _ = await replicate(proxy.url, target_registry, repo)

    assert first.ok, first.to_json()
    for referrer in (sbom, signature, counter):
        assert await raw_at(target_registry, repo, referrer.digest) == referrer.raw
    top = json.loads(await raw_at(target_registry, repo, fallback_tag(image.digest)) or b"{}")
    assert top["manifests"][0] == elsewhere.descriptor()
    assert [m["digest"] for m in top["manifests"]] == [str(elsewhere.digest), str(sbom.digest)]
    assert top["manifests"][1]["artifactType"] == SBOM_TYPE
    for subject, referrer in ((sbom, signature), (signature, counter)):
        listed = json.loads(
            await raw_at(target_registry, repo, fallback_tag(subject.digest)) or b"{}"
        )
        assert [m["digest"] for m in listed["manifests"]] == [str(referrer.digest)]
    assert second.ok, second.to_json()
    assert {i.outcome for i in second.items} == {"skipped"}
    writes = [i for i in second.items if i.outcome == "copied"]
    assert writes == []
    assert second.stats["target"].manifests_written == 0


async def test_dry_run_lists_api_referrers_and_writes_nothing(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """The plan names every referrer level; the target gets nothing."""
    image, sbom, signature, _ = chain(repo)
    with fault_proxy(source_registry.url, emulate_referrers=True) as proxy:
        await push_image(proxy.url, repo, image, "v1")
        for referrer in (sbom, signature):
            await push_image(proxy.url, repo, referrer)
        report, _ = await replicate(proxy.url, target_registry, repo, dry_run=True)

    planned = {i.digest for i in report.items if i.outcome == "planned"}
    assert planned == {str(image.digest), str(sbom.digest), str(signature.digest)}
    async with RegistryWriter(target_registry) as w:
        assert await w.list_tags(repo) == []


async def test_api_referrers_verify_on_a_trusted_policy(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str, tmp_path: Path
) -> None:
    """
    An unsigned SBOM referrer found through the API is rejected and stays away; once it
    carries a signature by the trusted key, it arrives, with that signature.
    """
    from tests.replicate.test_trusted import push_signed
    from tests.replicate.test_trusted import replicate as trusted_pass

    image = make_image(f"{repo}/trusted")
    sbom = make_referrer(image, f"{repo}/trusted-sbom", artifact_type=SBOM_TYPE)
    with fault_proxy(source_registry.url, emulate_referrers=True) as proxy:
        await push_signed(source_registry, repo, image, "v1")
        await push_image(proxy.url, repo, sbom)
        settings = load_settings(trusted_config(tmp_path, source_registry, target_registry, repo))
        first = await trusted_pass(settings, proxy.url, target_registry)  # type: ignore[arg-type]
        [item] = [i for i in first.items if i.digest == str(sbom.digest)]
        assert (item.outcome, item.reason) == ("rejected", "no-signature")
        assert await raw_at(target_registry, repo, sbom.digest) is None

        sig, _ = await push_signature(
            source_registry, repo, sbom.digest, [signed_layer(sbom.digest, repo)]
        )
        second = await trusted_pass(settings, proxy.url, target_registry)  # type: ignore[arg-type]

    assert second.ok, second.to_json()
    assert await raw_at(target_registry, repo, sbom.digest) == sbom.raw
    sig_raw = await raw_at(target_registry, repo, f"{sbom.digest.tag_form}.sig")
    assert sig_raw is not None
    assert Digest.of(sig_raw) == sig


async def test_referrers_api_pages_are_followed(source_registry: LocalRegistry, repo: str) -> None:
    """A first page with ``Link: rel="next"``: the second page's referrers are found too."""
    image = make_image(f"{repo}/paged")
    one, two = make_referrer(image, f"{repo}/p1"), make_referrer(image, f"{repo}/p2")
    with fault_proxy(source_registry.url, emulate_referrers=True) as proxy:
        await push_image(proxy.url, repo, image, "v1")
        for referrer in (one, two):
            await push_image(proxy.url, repo, referrer)
        page = json.dumps(
            {"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": [one.descriptor()]}
        ).encode()
        next_url = f"/v2/{repo}/referrers/{image.digest}?last=1"
        proxy.add(
            Fault.respond(
                200,
                page,
                {"Content-Type": mediatype.OCI_INDEX, "Link": f'<{next_url}>; rel="next"'},
            ),
            kinds="referrers",
            path=rf"referrers/{image.digest}$",
            times=1,
        )
        async with open_client(proxy.url) as client:
            found = await client.referrers_by_api(repo, image.digest)
            sboms = await client.referrers_by_api(repo, image.digest, "nothing/of-this-type")

    assert found is not None
    assert {d.digest for d in found} == {one.digest, two.digest}
    assert sboms == []
    assert len(proxy.requests("referrers")) == 3


async def test_a_target_with_the_api_gets_no_fallback_tag(
    source_registry: LocalRegistry, target_registry: LocalRegistry, repo: str
) -> None:
    """Where the target has the referrers API too, it lists the referrers; no tag is written."""
    image, sbom, signature, _ = chain(repo)
    with (
        fault_proxy(source_registry.url, emulate_referrers=True) as source,
        fault_proxy(target_registry.url, emulate_referrers=True) as target,
    ):
        await push_image(source.url, repo, image, "v1")
        for referrer in (sbom, signature):
            await push_image(source.url, repo, referrer)
        async with open_client(source.url, "source") as src, open_client(target.url) as dst:
            report = await run_policy(policy_for(repo), src, {"target": dst}, RETRY)
            listed = await dst.referrers_by_api(repo, image.digest)

    assert report.ok, report.to_json()
    assert listed is not None
    assert [d.digest for d in listed] == [sbom.digest]
    async with RegistryWriter(target_registry) as w:
        assert await w.list_tags(repo) == ["v1"]
    assert await raw_at(target_registry, repo, signature.digest) == signature.raw


async def test_the_source_api_is_asked_once_per_subject_whatever_the_targets(
    source_registry: LocalRegistry,
    target_registry: LocalRegistry,
    third_registry: LocalRegistry,
    repo: str,
) -> None:
    """Two targets, three subjects (image, SBOM, its signature): three API calls, not six."""
    image, sbom, signature, _ = chain(repo)
    with fault_proxy(source_registry.url, emulate_referrers=True) as proxy:
        await push_image(proxy.url, repo, image, "v1")
        for referrer in (sbom, signature):
            await push_image(proxy.url, repo, referrer)
        async with (
            open_client(proxy.url, "source") as src,
            open_client(target_registry, "a") as a,
            open_client(third_registry, "b") as b,
        ):
            report = await run_policy(policy_for(repo), src, {"a": a, "b": b}, RETRY)
        calls = proxy.calls("referrers")

    assert report.ok, report.to_json()
    assert calls == 3
    for registry in (target_registry, third_registry):
        assert await raw_at(registry, repo, signature.digest) == signature.raw
