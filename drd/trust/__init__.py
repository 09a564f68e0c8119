"""
Signature verification: which artifacts are verified under a trust policy.

``keys`` (trusted keys, policies), ``cosign`` (the ``.sig`` tag form),
``bundle`` (Rekor entries, sigstore bundles), ``notation`` and ``notation_trust``
(Notation envelopes, trust stores), ``timestamp`` (RFC 3161 countersignatures),
``attest`` (in-toto attestations), ``policy`` (verdicts, tag names) are pure;
``verify`` fetches what they need through a client.
"""
