"""
Signature verification: which artifacts are verified under a trust policy.

``keys`` (trusted keys, policies), ``cosign`` (the ``.sig`` tag form),
``bundle`` (Rekor entries, sigstore bundles), ``policy`` (verdicts, tag names)
are pure; ``verify`` fetches what they need through a client.
"""
