"""Listings fold attached tags into their image's line (`drd.commands.folding`). Pure."""

from __future__ import annotations

from drd.commands.folding import Line, fold_items
from drd.commands.replicate import render
from drd.oci.digest import Digest
from drd.oci.referrers import attestation_tag, fallback_tag, sbom_tag, signature_tag
from drd.replicate.report import ItemResult, PolicyReport

A = Digest.of(b"image a")
B = Digest.of(b"image b")
SIG_A = Digest.of(b"signature of a")
ATT_A = Digest.of(b"attestation of a")
SBOM_A = Digest.of(b"sbom of a")
SIG_SBOM = Digest.of(b"signature of a's sbom")
ORPHAN = Digest.of(b"nothing tagged")


def item(tag: str, digest: Digest, outcome: str = "copied", reason: str = "", target: str = "dr"):
    return ItemResult("team/app", tag, target, str(digest), outcome, reason)


def fold(items: list[ItemResult], all_tags: bool = False) -> list[Line[ItemResult]]:
    return fold_items(
        items,
        scope=lambda i: (i.target, i.repository),
        ending=lambda i: (i.outcome, i.reason),
        all_tags=all_tags,
    )


def test_attached_tags_that_ended_like_their_image_fold_into_its_line() -> None:
    """A signature, an attestation, an SBOM and the SBOM's own signature: one line for v1."""
    items = [
        item("v1", A),
        item(signature_tag(A), SIG_A),
        item(attestation_tag(A), ATT_A),
        item(sbom_tag(A), SBOM_A),
        item(signature_tag(SBOM_A), SIG_SBOM),
        item("v2", B),
    ]
    lines = fold(items)
    assert [(line.item.tag, line.note()) for line in lines] == [
        ("v1", " (+ 2 signatures, attestation, SBOM)"),
        ("v2", ""),
    ]


def test_an_attached_tag_that_ended_otherwise_gets_a_line_of_its_own_under_the_image() -> None:
    """The image was up to date, its new signature copied: a line naming v1, signature only."""
    lines = fold([item("v1", A, "skipped"), item(signature_tag(A), SIG_A, "copied")])
    assert [(line.item.tag, line.ending.outcome, line.note()) for line in lines] == [
        ("v1", "skipped", ""),
        ("v1", "copied", " (signature only)"),
    ]


def test_orphans_other_targets_and_all_tags_stay_listed() -> None:
    """
    A signature whose image is not listed, or is listed at another target, keeps its own
    line; the second tag of an image is listed without the count; --all-tags folds nothing.
    """
    items = [
        item("latest", A),
        item("v1", A),
        item(signature_tag(A), SIG_A),
        item(signature_tag(ORPHAN), SIG_A),
        item(fallback_tag(A), SIG_A, target="dr2"),
    ]
    lines = fold(items)
    assert [(line.item.tag, line.item.target, line.note()) for line in lines] == [
        ("latest", "dr", " (+ signature)"),
        ("v1", "dr", ""),
        (signature_tag(ORPHAN), "dr", ""),
        (fallback_tag(A), "dr2", ""),
    ]
    every = fold(items, all_tags=True)
    assert [line.item.tag for line in every] == [i.tag for i in items]
    assert all(line.note() == "" for line in every)


def test_replicate_text_folds_and_all_tags_lists() -> None:
    """`render` shows v1 once with what rode along; with all_tags, the .sig and .att lines."""
    items = [
        item("v1", A),
        item(signature_tag(A), SIG_A),
        item(attestation_tag(A), ATT_A),
        item(signature_tag(B), SIG_A, "failed", "answered 500"),
        item("v2", B, "skipped"),
    ]
    report = PolicyReport(policy="p", source="src", items=items)
    assert render([report]).splitlines()[1:] == [
        f"  copied   dr team/app:v1 {str(A)[:19]} (+ signature, attestation)",
        f"  failed   dr team/app:v2 {str(B)[:19]} (signature only): answered 500",
    ]
    every = render([report], all_tags=True).splitlines()[1:]
    assert f"  copied   dr team/app:{signature_tag(A)} {str(SIG_A)[:19]}" in every
    assert f"  copied   dr team/app:{attestation_tag(A)} {str(ATT_A)[:19]}" in every
    assert len(every) == 4


def test_json_items_name_their_subject() -> None:
    """JSON keeps every tag as its own item; an attached one names its image's digest."""
    report = PolicyReport(
        policy="p", source="src", items=[item("v1", A), item(signature_tag(A), SIG_A)]
    )
    doc = report.to_json()["items"]
    assert [(i["tag"], i.get("subject")) for i in doc] == [
        ("v1", None),
        (signature_tag(A), str(A)),
    ]
