"""
The Notation keys of a ``[trust.NAME]`` table: notation_roots, notation_identities,
notation_policy (Notation's own trustpolicy.json and trust store), require_attestations.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from drd.config import describe, load_settings
from drd.errors import ConfigError
from drd.oci.descriptor import Descriptor
from drd.oci.digest import Digest
from drd.resources import trust_policy
from drd.trust.notation import JWS_MEDIA_TYPE, verify_notation
from drd.trust.notation_trust import notation_for
from tests.trust.notary import NOW, notation_fixture

BASE = 'version = 1\n[endpoints.src]\nurl = "http://127.0.0.1:5000"\n'
MOCK = Descriptor(
    "application/vnd.docker.distribution.manifest.v2+json",
    Digest.parse("sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e"),
    528,
)
NOTARY_ROOT = "x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=Notation Test Root"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("DRD_") and name != "DRD_FIXTURES":
            monkeypatch.delenv(name)


def config(tmp_path: Path, trust: str) -> Path:
    path = tmp_path / "drd.toml"
    path.write_text(BASE + "[trust.notary]\n" + trust)
    return path


def errors_of(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return dict(caught.value.errors)


def notation_home(tmp_path: Path, policy: dict[str, object]) -> Path:
    """A Notation config directory: trustpolicy.json beside truststore/x509/ca/…"""
    home = tmp_path / "notation"
    shutil.copytree(notation_fixture("truststore"), home / "truststore")
    (home / "trustpolicy.json").write_text(json.dumps(policy))
    return home / "trustpolicy.json"


def upstream_policy(**changes: object) -> dict[str, object]:
    """notation-go's dummyOCIPolicyDocument for the mock envelopes, written as JSON."""
    policy: dict[str, object] = {
        "name": "test-statement-name",
        "registryScopes": ["registry.acme-rockets.io/software/net-monitor"],
        "signatureVerification": {"level": "strict"},
        # Upstream also names signingAuthority:valid-trust-store, which the fixtures do not hold.
        "trustStores": ["ca:valid-trust-store", "tsa:test-timestamp"],
        "trustedIdentities": [NOTARY_ROOT],
    }
    policy.update(changes)
    return {"version": "1.0", "trustPolicies": [policy]}


def test_notation_roots_and_identities_load_into_the_policy(tmp_path: Path) -> None:
    root = notation_fixture("truststore/x509/ca/valid-trust-store/NotationTestRoot.pem")
    path = config(
        tmp_path, f'notation_roots = ["{root}"]\nnotation_identities = ["{NOTARY_ROOT}"]\n'
    )

    policy = trust_policy(load_settings(path).trust["notary"])

    assert policy.keys == ()
    (trust,) = policy.notation
    assert [r.source for r in trust.roots] == [str(root)]
    assert trust.identities == (NOTARY_ROOT,)


def test_der_certificates_are_accepted_as_notation_and_tsa_roots(tmp_path: Path) -> None:
    root = notation_fixture("truststore/x509/tsa/test-timestamp/globalsignRoot.cer")
    path = config(tmp_path, f'notation_roots = ["{root}"]\nnotation_tsa_roots = ["{root}"]\n')

    (trust,) = trust_policy(load_settings(path).trust["notary"]).notation
    assert (len(trust.roots), len(trust.tsa_roots)) == (1, 1)


def test_bad_notation_material_names_the_field(tmp_path: Path) -> None:
    junk = tmp_path / "junk.crt"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    files = config(tmp_path, f'notation_roots = ["{junk}", "{tmp_path}/absent.crt"]\n')
    text = f'notation_roots = ["{junk}"]\n'
    text += 'notation_identities = ["CN=release"]\nrequire_attestations = ["not a uri"]\n'

    errors = errors_of(files)
    assert "not a PEM or DER X.509 certificate" in errors["trust.notary.notation_roots[0]"]
    assert "does not exist" in errors["trust.notary.notation_roots[1]"]
    errors = errors_of(config(tmp_path, text))
    assert "x509.subject:" in errors["trust.notary.notation_identities[0]"]
    assert "predicate type" in errors["trust.notary.require_attestations[0]"]


def test_a_policy_needs_some_trust_material(tmp_path: Path) -> None:
    errors = errors_of(
        config(tmp_path, 'require_attestations = ["https://slsa.dev/provenance/v1"]\n')
    )
    assert "notation_roots" in errors["trust.notary.keys"]
    assert "fulcio_roots / sigstore_root" in errors["trust.notary.keys"]


def test_one_policy_holds_keyless_and_notation_trust_together(tmp_path: Path) -> None:
    """sigstore_root with an identity and notation_roots in one table: both are loaded."""
    root = notation_fixture("truststore/x509/ca/valid-trust-store/NotationTestRoot.pem")
    path = config(
        tmp_path,
        f'sigstore_root = "public-good"\nnotation_roots = ["{root}"]\n'
        "[[trust.notary.identities]]\n"
        'issuer = "https://token.actions.githubusercontent.com"\n'
        'subject_regex = "https://github.com/org/.*"\n',
    )
    settings = load_settings(path)

    policy = trust_policy(settings.trust["notary"])

    assert policy.keys == ()
    assert policy.keyless is not None
    assert len(policy.keyless.identities) == 1
    assert [len(n.roots) for n in policy.notation] == [1]
    described = describe(settings)["trust"]["notary"]
    assert (described["loaded_fulcio_roots"], described["loaded_notation_roots"]) == (0, 1)


def test_notation_trustpolicy_json_and_trust_store_are_read(tmp_path: Path) -> None:
    """The upstream policy for mock/ca_valid_sig_env.json, read from Notation's own files."""
    policy_file = notation_home(tmp_path, upstream_policy())
    path = config(tmp_path, f'notation_policy = "{policy_file}"\n')

    policy = trust_policy(load_settings(path).trust["notary"])
    trust = notation_for(policy.notation, "software/net-monitor")

    assert trust is not None
    assert [r.source for r in trust.tsa_roots] == [
        "truststore/x509/tsa/test-timestamp/globalsignRoot.cer"
    ]
    assert notation_for(policy.notation, "software/other") is None
    assert notation_for(policy.notation, "net-monitor") is None
    assert notation_for(policy.notation, "team/software/net-monitor") is None
    raw = notation_fixture("mock/ca_valid_sig_env.json").read_bytes()
    verified = verify_notation(raw, JWS_MEDIA_TYPE, MOCK, trust, "notary", NOW)
    assert verified.key_source.endswith("ca/valid-trust-store/NotationTestRoot.pem")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"signatureVerification": {"level": "permissive"}}, "level strict"),
        ({"trustStores": ["ca:absent-store"]}, "holds no certificate"),
        ({"trustStores": ["ca:../escape"]}, "is not ca:NAME"),
        ({"trustedIdentities": ["CN=x"]}, "x509.subject:"),
        ({"registryScopes": []}, "registryScopes"),
    ],
)
def test_unusable_notation_policies_are_config_errors(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    policy_file = notation_home(tmp_path, upstream_policy(**changes))

    errors = errors_of(config(tmp_path, f'notation_policy = "{policy_file}"\n'))

    assert message in errors["trust.notary.notation_policy"]


def test_config_check_counts_the_notation_roots_it_loaded(tmp_path: Path) -> None:
    root = notation_fixture("truststore/x509/ca/valid-trust-store/NotationTestRoot.pem")
    settings = load_settings(config(tmp_path, f'notation_roots = ["{root}"]\n'))

    described = describe(settings)["trust"]["notary"]

    assert (described["loaded_keys"], described["loaded_notation_roots"]) == (0, 1)
