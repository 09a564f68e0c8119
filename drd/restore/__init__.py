"""Restore: recreate repositories and tags from a snapshot, children before parents."""
