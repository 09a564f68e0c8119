"""
Real sigstore bundles (shared/fixtures/signatures/README.md sections 1 and 3), offline.

Every ACCEPT there is accepted here with the identity upstream expects, and every
REJECT rejected with the matching reason. Bundles over a plain file are verified
against that file's digest directly with the pure verifier.
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from drd.errors import VerificationError
from drd.oci.digest import Digest
from drd.trust.bundle import verify_sigstore_bundle
from drd.trust.fulcio import IdentityRule, KeylessTrust
from drd.trust.keys import TrustPolicy
from drd.trust.policy import Verified
from drd.trust.sigstore_root import PUBLIC_GOOD, load_sigstore_root, public_good_json
from tests.trust.fixtures import signature_fixture

BEACON = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon"
    "/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
GHA = "https://token.actions.githubusercontent.com"
GITHUB_OAUTH = "https://github.com/login/oauth"
PROD = "sigstore/trusted_root/production.trusted_root.json"
STG = "sigstore/trusted_root/staging.trusted_root.json"
SIGSTORE_GO = "sigstore/trusted_root/sigstore-go-public-good.trusted_root.json"
REKOR2_ROOT = "sigstore/conformance/rekor2-happy-path/trusted_root.json"
A_TXT = "sigstore/conformance/a.txt"
SIGSTORE_JS = (
    "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main"
)
PROVENANCE_DIGEST = (
    "sha512:76176ffa33808b54602c7c35de5c6e9a4deb96066dba6533f50ac234f4f1f4c6"
    "b3527515dc17c06fbe2860030f410eee69ea20079bd3a2c6f3dcf3b329b10751"
)


def _policy(root: str, subject: str | None, issuer: str) -> TrustPolicy:
    if root == PUBLIC_GOOD:
        loaded = load_sigstore_root(public_good_json(), PUBLIC_GOOD)
    else:
        loaded = load_sigstore_root(signature_fixture(root).read_bytes(), root)
    who = (
        IdentityRule(issuer=issuer, subject=subject)
        if subject is not None
        else IdentityRule(issuer=issuer, subject_regex=re.compile(".*"))
    )
    return TrustPolicy(
        name="fixture",
        keys=(),
        rekor_keys=loaded.rekor_keys,
        keyless=KeylessTrust(
            loaded.authorities, (who,), loaded.ctlog_keys, loaded.timestamp_authorities
        ),
    )


def _verify(
    bundle: str, artifact: str | Digest, root: str, subject: str | None, issuer: str
) -> Verified:
    raw = signature_fixture(bundle).read_bytes()
    if isinstance(artifact, Digest):
        return verify_sigstore_bundle(raw, artifact, _policy(root, subject, issuer))
    data = signature_fixture(artifact).read_bytes()
    return verify_sigstore_bundle(raw, Digest.of(data), _policy(root, subject, issuer), data)


ACCEPT = [
    pytest.param(
        "sigstore/conformance/happy-path-v0.1/bundle.sigstore.json", A_TXT, PROD, BEACON, GHA,
        id="happy-path-v0.1",
    ),
    pytest.param(
        "sigstore/conformance/happy-path-v0.3/bundle.sigstore.json", A_TXT, PROD, BEACON, GHA,
        id="happy-path-v0.3",
    ),
    pytest.param(
        "sigstore/conformance/happy-path-v0.3/bundle.sigstore.json", A_TXT, SIGSTORE_GO, BEACON,
        GHA, id="happy-path-v0.3-sigstore-go-root",
    ),
    pytest.param(
        "sigstore/conformance/happy-path-v0.3/bundle.sigstore.json", A_TXT, PUBLIC_GOOD, BEACON,
        GHA, id="happy-path-v0.3-shipped-public-good-root",
    ),
    pytest.param(
        "sigstore/conformance/happy-path-intoto-in-dsse-v3/bundle.sigstore.json", A_TXT, PROD,
        BEACON, GHA, id="happy-path-intoto-in-dsse-v3",
    ),
    pytest.param(
        "sigstore/conformance/rekor2-happy-path/bundle.sigstore.json", A_TXT, REKOR2_ROOT,
        BEACON, GHA, id="rekor2-happy-path-own-root",
    ),
    pytest.param(
        "sigstore/conformance/rekor2-happy-path/bundle.sigstore.json", A_TXT, STG, BEACON, GHA,
        id="rekor2-happy-path-staging",
    ),
    pytest.param(
        "sigstore/sigstore-python/bundle.txt.sigstore", "sigstore/sigstore-python/bundle.txt",
        STG, "a@tny.town", GITHUB_OAUTH, id="sigstore-python-bundle-v0.1",
    ),
    pytest.param(
        "sigstore/sigstore-python/bundle_v3.txt.sigstore",
        "sigstore/sigstore-python/bundle_v3.txt", STG, "william@yossarian.net", GITHUB_OAUTH,
        id="sigstore-python-bundle-v0.3",
    ),
    # Policy choice: v0.1 allows a SET without a proof (as sigstore-go and cosign's tag form).
    pytest.param(
        "sigstore/sigstore-java/bundle.v1.no.inclusion.sigstore",
        "sigstore/sigstore-java/artifact.txt", PROD, "appu@google.com",
        "https://accounts.google.com", id="sigstore-java-v0.1-set-only",
    ),
    pytest.param(
        "sigstore/sigstore-go/bundle-provenance.json", Digest.parse(PROVENANCE_DIGEST), PROD,
        SIGSTORE_JS, GHA, id="sigstore-go-provenance-intoto-0.0.2",
    ),
    pytest.param(
        "sigstore/conformance/bundle-from-wrong-instance_fail/bundle.sigstore.json", A_TXT, STG,
        BEACON, GHA, id="wrong-instance-with-its-own-staging-root",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("bundle", "artifact", "root", "subject", "issuer"), ACCEPT)
def test_real_bundle_is_accepted_with_its_identity(
    bundle: str, artifact: str | Digest, root: str, subject: str, issuer: str
) -> None:
    """Upstream's ACCEPT cases verify offline and name upstream's identity."""
    verified = _verify(bundle, artifact, root, subject, issuer)

    assert (verified.identity, verified.issuer) == (subject, issuer)
    assert verified.form == "sigstore-bundle"


def test_wrong_identity_rejects_a_real_bundle() -> None:
    """A real, valid bundle from another identity is untrusted-identity."""
    bundle = "sigstore/conformance/happy-path-v0.3/bundle.sigstore.json"

    with pytest.raises(VerificationError) as caught:
        _verify(bundle, A_TXT, PROD, BEACON.replace("main", "dev"), GHA)
    assert caught.value.reason == "untrusted-identity"
    with pytest.raises(VerificationError) as caught:
        _verify(bundle, A_TXT, PROD, BEACON, "https://accounts.google.com")
    assert caught.value.reason == "untrusted-identity"


REJECT = [
    pytest.param(
        "sigstore/sigstore-java/bundle.v2.no.inclusion.sigstore",
        "sigstore/sigstore-java/artifact.txt", PROD, "appu@google.com",
        "https://accounts.google.com", "tlog-invalid", "no inclusion proof",
        id="sigstore-java-v0.2-without-proof",
    ),
    pytest.param(
        "sigstore/conformance/signature-mismatch_fail/bundle.sigstore.json", A_TXT, PROD,
        BEACON, GHA, "bad-signature", "does not verify", id="signature-mismatch_fail",
    ),
    pytest.param(
        "sigstore/conformance/checkpoint-wrong-roothash_fail/bundle.sigstore.json", A_TXT, PROD,
        BEACON, GHA, "tlog-invalid", "checkpoint is for another tree",
        id="checkpoint-wrong-roothash_fail",
    ),
    pytest.param(
        "sigstore/conformance/set-invalid-signature_fail/bundle.sigstore.json", A_TXT, PROD,
        BEACON, GHA, "tlog-invalid", "signed entry timestamp does not verify",
        id="set-invalid-signature_fail",
    ),
    pytest.param(
        "sigstore/conformance/dsse-invalid-sig_fail/bundle.sigstore.json", A_TXT, PROD,
        BEACON, GHA, "bad-signature", "does not verify", id="dsse-invalid-sig_fail",
    ),
    pytest.param(
        "sigstore/conformance/bundle-from-wrong-instance_fail/bundle.sigstore.json", A_TXT, PROD,
        BEACON, GHA, "untrusted-root", "does not chain", id="bundle-from-wrong-instance_fail",
    ),
    pytest.param(
        "sigstore/conformance/wrong-material_fail/bundle.sigstore.json",
        "sigstore/conformance/wrong-material_fail/artifact", PROD, BEACON, GHA,
        "wrong-digest", "message digest", id="wrong-material_fail",
    ),
    pytest.param(
        "sigstore/sigstore-python/bundle_cve_2022_36056.txt.sigstore",
        "sigstore/sigstore-python/bundle_cve_2022_36056.txt", STG, None, GITHUB_OAUTH,
        "tlog-invalid", "records another", id="cve-2022-36056-inconsistent-log-entry",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("bundle", "artifact", "root", "subject", "issuer", "reason", "message"), REJECT
)
def test_real_bad_bundle_is_rejected_with_its_reason(
    bundle: str,
    artifact: str,
    root: str,
    subject: str | None,
    issuer: str,
    reason: str,
    message: str,
) -> None:
    """Upstream's REJECT cases fail, each for the reason upstream gives."""
    with pytest.raises(VerificationError, match=message) as caught:
        _verify(bundle, artifact, root, subject, issuer)
    assert caught.value.reason == reason


def test_provenance_bundle_for_another_digest_is_wrong_digest() -> None:
    """The DSSE statement must name the artifact: another digest is rejected."""
    other = Digest.parse("sha512:" + "00" * 64)

    with pytest.raises(VerificationError) as caught:
        _verify("sigstore/sigstore-go/bundle-provenance.json", other, PROD, SIGSTORE_JS, GHA)
    assert caught.value.reason == "wrong-digest"


def test_shipped_public_good_root_is_the_production_root() -> None:
    """drd ships sigstore's public-good trusted root byte for byte."""
    assert public_good_json() == signature_fixture(PROD).read_bytes()
    assert json.loads(public_good_json())["certificateAuthorities"]


def test_tag_form_rfc3161_timestamp_is_a_signing_time_source() -> None:
    """
    cosign's ``dev.sigstore.cosign/rfc3161timestamp`` annotation (a TSA token over the raw
    signature) proves the signing time: rekor2-happy-path's leaf, signature and token,
    laid out as a ``.sig`` layer, pass chain, signature and time checks and stop only at
    the payload (a.txt is not a simple-signing document). Without a configured TSA, or
    without the token, nothing proves the time.
    """
    from dataclasses import replace

    from drd.trust.keyless import (
        CERTIFICATE_ANNOTATION,
        TIMESTAMP_ANNOTATION,
        verify_cosign_keyless,
    )

    doc = json.loads(
        signature_fixture(
            "sigstore/conformance/rekor2-happy-path/bundle.sigstore.json"
        ).read_bytes()
    )
    material = doc["verificationMaterial"]
    leaf = base64.b64decode(material["certificate"]["rawBytes"])
    pem = (
        b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(leaf) + b"-----END CERTIFICATE-----\n"
    )
    token = material["timestampVerificationData"]["rfc3161Timestamps"][0]["signedTimestamp"]
    annotations = {
        CERTIFICATE_ANNOTATION: pem.decode(),
        TIMESTAMP_ANNOTATION: json.dumps({"SignedRFC3161Timestamp": token}),
    }
    payload = signature_fixture(A_TXT).read_bytes()
    signature = doc["messageSignature"]["signature"]
    policy = _policy(REKOR2_ROOT, BEACON, GHA)

    def reason(annotations: dict[str, str], policy: TrustPolicy) -> tuple[str, str]:
        with pytest.raises(VerificationError) as caught:
            verify_cosign_keyless(payload, signature, annotations, Digest.of(payload), policy)
        return caught.value.reason, caught.value.message

    found, message = reason(annotations, policy)
    assert (found, message.startswith("signed payload is not valid JSON")) == ("malformed", True)
    assert policy.keyless is not None
    no_tsa = replace(policy, keyless=replace(policy.keyless, timestamp_authorities=()))
    assert reason(annotations, no_tsa)[0] == "tlog-invalid"
    assert reason({CERTIFICATE_ANNOTATION: pem.decode()}, policy)[0] == "tlog-invalid"


# Section 3: keyless in-toto attestations. The cosign bundle (v0.3, Rekor dsse 0.0.1)
# attests go-containerregistry's empty image under its own trusted root; the sigstore-js
# bundle (v0.1, Rekor intoto 0.0.2) is SLSA v1 provenance for an npm package.
COSIGN_ATTESTATION = "attestations/cosign/oci-attestation.sigstore.json"
COSIGN_ATTESTATION_ROOT = "attestations/cosign/trusted_root_pgi.json"
EMPTY_IMAGE = Digest.parse(
    "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
)
CODY = "cody@soyland.com"
SLSA_BUNDLE = "attestations/sigstore-js-slsa/sigstore.js@2.0.0-provenance.sigstore.json"
SIGSTORE_JS_PACKAGE = Digest.parse(
    "sha512:46d4e2f74c4877316640000a6fdf8a8b59f1e0847667973e9859f774dd31b8f1e0"
    "937813b777fb66a2ac67d50540fe34640966eee9fc2ccca387082b4c85cd3c"
)

ATTESTATION_ACCEPT = [
    pytest.param(
        COSIGN_ATTESTATION, EMPTY_IMAGE, COSIGN_ATTESTATION_ROOT, CODY, GITHUB_OAUTH,
        "https://cosign.sigstore.dev/attestation/v1", id="cosign-oci-attestation",
    ),
    pytest.param(
        SLSA_BUNDLE, SIGSTORE_JS_PACKAGE, PROD, SIGSTORE_JS, GHA,
        "https://slsa.dev/provenance/v1", id="sigstore-js-slsa-provenance-intoto-0.0.2",
    ),
    pytest.param(
        SLSA_BUNDLE, SIGSTORE_JS_PACKAGE, SIGSTORE_GO, SIGSTORE_JS, GHA,
        "https://slsa.dev/provenance/v1", id="sigstore-js-slsa-provenance-sigstore-go-root",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("bundle", "digest", "root", "subject", "issuer", "predicate_type"), ATTESTATION_ACCEPT
)
def test_real_keyless_attestation_is_accepted_for_its_subject(
    bundle: str, digest: Digest, root: str, subject: str, issuer: str, predicate_type: str
) -> None:
    """Section 3's ACCEPT cases: the statement names the digest; identity and type reported."""
    verified = _verify(bundle, digest, root, subject, issuer)

    assert (verified.identity, verified.issuer) == (subject, issuer)
    assert verified.predicate_type == predicate_type
    assert verified.digest == digest


ATTESTATION_REJECT = [
    pytest.param(
        COSIGN_ATTESTATION, Digest.parse("sha256:" + "11" * 32), COSIGN_ATTESTATION_ROOT, CODY,
        GITHUB_OAUTH, "wrong-digest", "does not name sha256:1111", id="cosign-other-digest",
    ),
    pytest.param(
        COSIGN_ATTESTATION, EMPTY_IMAGE, COSIGN_ATTESTATION_ROOT, "someone@example.com",
        GITHUB_OAUTH, "untrusted-identity", "signed by cody@soyland.com", id="cosign-other-san",
    ),
    pytest.param(
        COSIGN_ATTESTATION, EMPTY_IMAGE, COSIGN_ATTESTATION_ROOT, CODY, GHA,
        "untrusted-identity", "issuer https://github.com/login/oauth",
        id="cosign-other-issuer",
    ),
    pytest.param(
        COSIGN_ATTESTATION, EMPTY_IMAGE, STG, CODY, GITHUB_OAUTH, "untrusted-root",
        "does not chain", id="cosign-staging-root",
    ),
    pytest.param(
        SLSA_BUNDLE, Digest.parse("sha512:" + "00" * 64), PROD, SIGSTORE_JS, GHA,
        "wrong-digest", "does not name sha512:0000", id="slsa-other-digest",
    ),
    pytest.param(
        SLSA_BUNDLE, SIGSTORE_JS_PACKAGE, PROD, SIGSTORE_JS.replace("main", "dev"), GHA,
        "untrusted-identity", "signed by https://github.com/sigstore/sigstore-js/",
        id="slsa-other-san",
    ),
    pytest.param(
        SLSA_BUNDLE, SIGSTORE_JS_PACKAGE, STG, SIGSTORE_JS, GHA, "untrusted-root",
        "does not chain", id="slsa-staging-root",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("bundle", "digest", "root", "subject", "issuer", "reason", "message"), ATTESTATION_REJECT
)
def test_real_keyless_attestation_is_rejected_with_its_reason(
    bundle: str, digest: Digest, root: str, subject: str, issuer: str, reason: str, message: str
) -> None:
    """Section 3's REJECT cases: another digest, SAN, issuer or root, each with its reason."""
    with pytest.raises(VerificationError, match=message) as caught:
        _verify(bundle, digest, root, subject, issuer)
    assert caught.value.reason == reason
