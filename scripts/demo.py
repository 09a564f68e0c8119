"""
The embedded demo: drd's main job end to end on this machine, nothing outside loopback.

Starts three local registries (Debian's docker-registry on 127.0.0.1: a primary, a
DR replica, a drill registry), pushes a small sample set built here (a signed
multi-arch image, a signed single image, an unsigned image), writes a drd config,
then runs the real CLI: `drd replicate` with a trust policy, the same for keyless
(Sigstore) signatures by a CI identity, and - where this
checkout has them - `drd snapshot create`, `drd snapshot list`, `drd drill` (its
HTML report is kept and its path printed) and the `drd failover --dry-run` pre-flight.
Last, a Notation-signed image goes to the trusted DR target and `drd verify` checks it
there, while one signed under another CA is refused.

    .venv/bin/python scripts/demo.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from drd.oci.mediatype import OCI_MANIFEST as MANIFEST

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.images import (  # noqa: E402  (the sample builders live with the tests)
    RegistryWriter,
    make_cosign_signature,
    make_image,
    make_multiarch,
    push_image,
    push_index,
    signature_tag,
)
from tests.servers import LocalRegistry, registry_binary  # noqa: E402
from tests.trust.keyless_signing import (  # noqa: E402
    GHA,
    WORKFLOW,
    FakeFulcio,
    KeylessSigner,
    default_log,
)
from tests.trust.notary import make_signer, push_notation_signed  # noqa: E402
from tests.trust.signing import signature_manifest, simple_signing_payload  # noqa: E402

CONFIG = """\
version = 1

[endpoints.primary]
url = "{primary}"
region = "local-a"

[endpoints.dr]
url = "{dr}"
region = "local-b"

[endpoints.drill]
url = "{drill}"

[trust.release]
keys = ["{key}"]

[[replication]]
name = "prod"
source = "primary"
targets = ["dr"]
repositories = ["demo/**"]
require_signature = "release"
interval = "5m"

[snapshots]
source = "primary"
store = "file://{work}/snapshots"
interval = "1h"
blobs = true

[drills]
target = "drill"
trust = "release"
rto = "15m"
rpo = "1h"
report_dir = "{work}/reports"

[daemon]
state_dir = "{work}/state"
"""


def has_command(module: str) -> bool:
    """Whether this checkout's CLI has the command group (the demo grows with drd)."""
    return importlib.util.find_spec(f"drd.commands.{module}") is not None


def drd(config: Path, *args: str) -> int:
    """Run the real CLI, its output straight to the terminal."""
    cmd = [sys.executable, "-m", "drd", *args, "--config", str(config), "--log-level", "warning"]
    print(f"\n$ drd {' '.join(args)}", flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


async def push_samples(primary: LocalRegistry, key: ec.EllipticCurvePrivateKey) -> None:
    """A signed multi-arch index, a signed image, and an unsigned one."""
    index = make_multiarch("demo-multi", layers=2, layer_size=256 * 1024)
    await push_index(primary, "demo/web", index, "v1.0.0")
    ref = f"{primary.host}/demo/web"
    await push_image(
        primary,
        "demo/web",
        make_cosign_signature(index, key, docker_reference=ref),
        signature_tag(index.digest),
    )
    api = make_image("demo-api", layers=2, layer_size=128 * 1024)
    await push_image(primary, "demo/api", api, "v2.3.1")
    ref = f"{primary.host}/demo/api"
    await push_image(
        primary,
        "demo/api",
        make_cosign_signature(api, key, docker_reference=ref),
        signature_tag(api.digest),
    )
    await push_image(primary, "demo/api", make_image("demo-unsigned"), "v2.4.0-unsigned")


KEYLESS_CONFIG = """\
version = 1

[endpoints.primary]
url = "{primary}"

[endpoints.dr]
url = "{dr}"

[trust.ci]
fulcio_roots = ["{work}/fulcio-root.pem"]
rekor_keys = ["{work}/rekor.pub"]
require_rekor = true

[[trust.ci.identities]]
issuer = "{issuer}"
subject = "{subject}"
source_ref = "refs/heads/main"

[[replication]]
name = "ci"
source = "primary"
targets = ["dr"]
repositories = ["demo-ci/**"]
require_signature = "ci"
"""


def keyless_demo(work: Path, primary: LocalRegistry, dr: LocalRegistry) -> int:
    """
    Keyless signatures: a test Fulcio CA and Rekor log sign two images as CI would; the
    trusted target takes the one signed by the release workflow and rejects the one
    signed by a fork's workflow (untrusted-identity). Returns the number of surprises.
    """
    fulcio, log = FakeFulcio.create("demo-fulcio"), default_log()
    (work / "fulcio-root.pem").write_bytes(fulcio.root_pem())
    (work / "rekor.pub").write_bytes(log.public_pem())
    fork = WORKFLOW.replace("/org/app/", "/someone/fork/")

    async def push(tag: str, subject: str) -> None:
        image = make_image(f"demo-keyless-{tag}")
        await push_image(primary, "demo-ci/app", image, tag)
        signer = KeylessSigner(
            fulcio,
            log,
            leaf_options={"subject": subject, "claims": {"source_ref": "refs/heads/main"}},
        )
        payload = simple_signing_payload(image.digest, f"{primary.host}/demo-ci/app")
        payload, signature, annotations = signer.sign_layer(payload)
        raw, blobs = signature_manifest([(payload, signature)], extra=[annotations])
        async with RegistryWriter(primary) as w:
            for blob in blobs.values():
                await w.push_blob("demo-ci/app", blob)
            await w.push_manifest("demo-ci/app", signature_tag(image.digest), raw, MANIFEST)

    async def push_both() -> None:
        await push("v1", WORKFLOW)
        await push("v1-fork", fork)

    asyncio.run(push_both())
    config = work / "drd-keyless.toml"
    config.write_text(
        KEYLESS_CONFIG.format(
            primary=primary.url, dr=dr.url, work=work, issuer=GHA, subject=WORKFLOW
        )
    )
    print(f"\n# keyless: trust {WORKFLOW} (issuer {GHA}) only")
    # Exit 3 is expected: v1-fork is signed by another workflow and must be rejected.
    surprises = drd(config, "replicate") != 3
    surprises += drd(config, "verify", f"{dr.host}/demo-ci/app:v1") != 0
    surprises += drd(config, "verify", f"{primary.host}/demo-ci/app:v1-fork") != 1
    return surprises


NOTATION_CONFIG = """\
version = 1

[endpoints.primary]
url = "{primary}"

[endpoints.dr]
url = "{dr}"

[trust.notary]
notation_roots = ["{root}"]
notation_identities = ["x509.subject: O=drd tests, CN=release"]

[[replication]]
name = "notation"
source = "primary"
targets = ["dr"]
repositories = ["notary/**"]
require_signature = "notary"
"""


def notation_demo(primary: LocalRegistry, dr: LocalRegistry, work: Path) -> int:
    """
    A Notation-signed image replicated to the trusted DR target, one under another CA refused.

    Self-contained: its own test CA (the trust store), its own config and policy. The
    signatures are JWS envelopes attached as Notation attaches them to a registry without
    the referrers API: the signature manifest and the ``sha256-<hex>`` index listing it.
    Returns the number of steps that did not answer as they should.
    """
    trusted, foreign = make_signer("demo release CA"), make_signer("someone else's CA")
    root = work / "notation-ca.crt"
    root.write_bytes(trusted.root_pem())
    signed, stranger = make_image("notation-signed"), make_image("notation-foreign")

    async def push() -> None:
        await push_notation_signed(primary, "notary/app", signed, "v1", trusted)
        await push_notation_signed(primary, "notary/app", stranger, "v2-foreign", foreign)

    asyncio.run(push())
    config = work / "drd-notation.toml"
    config.write_text(NOTATION_CONFIG.format(primary=primary.url, dr=dr.url, root=root))
    failures = 0
    # Exit 3 is the expected answer: v2-foreign chains to a CA the policy does not trust.
    failures += drd(config, "replicate", "--policy", "notation") != 3
    failures += drd(config, "verify", f"{dr.host}/notary/app:v1") != 0
    return failures


@contextlib.contextmanager
def registries(work: Path) -> Iterator[tuple[LocalRegistry, LocalRegistry, LocalRegistry]]:
    binary = registry_binary()
    with (
        LocalRegistry.start(binary, work / "primary") as primary,
        LocalRegistry.start(binary, work / "dr") as dr,
        LocalRegistry.start(binary, work / "drill") as drill,
    ):
        yield primary, dr, drill


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it afterwards")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="drd-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = work / "release.pub"
    key_file.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    failures = 0
    reports: Path | None = None
    try:
        with registries(work) as (primary, dr, drill):
            print(f"primary {primary.url}, dr {dr.url}, drill {drill.url}; work in {work}")
            asyncio.run(push_samples(primary, key))
            config = work / "drd.toml"
            config.write_text(
                CONFIG.format(
                    primary=primary.url, dr=dr.url, drill=drill.url, key=key_file, work=work
                )
            )
            # Exit 3 (done, with rejections) is the expected answer: the unsigned image
            # must be rejected.
            failures += drd(config, "replicate") not in (0, 3)
            if has_command("snapshot"):
                failures += drd(config, "snapshot", "create") != 0
                failures += drd(config, "snapshot", "list") != 0
            if has_command("drill"):
                failures += drd(config, "drill", "--report-dir", str(work / "reports")) != 0
                reports = work / "reports"
                if args.keep is None and reports.is_dir():
                    # The work folder goes away at the end; the reports are worth keeping.
                    reports = Path(tempfile.mkdtemp(prefix="drd-demo-reports-"))
                    shutil.copytree(work / "reports", reports, dirs_exist_ok=True)
                for report in sorted(reports.glob("**/*.html")):
                    print(f"drill report: {report}")
            if has_command("failover"):
                failures += drd(config, "failover", "--to", "dr", "--dry-run") != 0
            # Last, not first: its images are trusted only by its own policy, not the drill's.
            failures += keyless_demo(work, primary, dr)
            failures += notation_demo(primary, dr, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\ndemo finished" + (" with failures" if failures else ""))
    print(closing(reports, args.keep))
    return 1 if failures else 0


def closing(reports: Path | None, kept: Path | None) -> str:
    """The last paragraph: what just happened, and where to look next."""
    lines = [
        "",
        "What just happened: three registries ran on 127.0.0.1 (primary, dr, drill). drd",
        "copied the signed images from primary to dr and refused the unsigned one (its",
        'policy has require_signature = "release"), snapshotted primary\'s tags, restored a',
        "sample of them into the drill registry and judged the drill against its RTO/RPO,",
        "checked a failover to dr without switching, and verified signatures with drd verify.",
        "",
        "Where to look next:",
    ]
    if reports is not None and reports.is_dir():
        lines.append(f"  {reports}/   the drill reports (HTML, Markdown, JSON): kept")
    if kept is not None:
        lines.append(f"  {kept}/   the config (drd.toml), registries' data and snapshots")
    lines += [
        "  drd --help, drd COMMAND --help   every command, with examples",
        "  examples/drd.toml                every configuration key, commented",
        '  README.md, "Running it as a service"   systemd, the container image',
        f'  drd itself: {ROOT}/.venv/bin/drd   (export PATH="{ROOT}/.venv/bin:$PATH",',
        '                                   or install it: README.md, "Install")',
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
