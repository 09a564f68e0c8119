"""
Signature verification: which artifacts are verified under a trust policy.

``keys`` (trusted keys, policies), ``cosign`` (the ``.sig`` tag form),
``bundle`` (Rekor entries, sigstore bundles), ``notation`` and ``notation_trust``
(Notation envelopes, trust stores), ``timestamp`` (RFC 3161 countersignatures),
``attest`` (in-toto attestations), ``policy`` (verdicts, tag names) are pure;
so are the keyless pieces: ``fulcio`` (certificates, identities), ``sigstore_root``
(``trusted_root.json``), ``tlog`` (inclusion proofs, checkpoints), ``entries``
(what a log entry records) and ``keyless`` (both signature forms).
``verify`` fetches what they need through a client.
"""
