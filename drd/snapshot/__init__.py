"""
Snapshots: point-in-time, content-addressed records of a registry's metadata.

`take_snapshot` / `run_snapshot` walk a registry into a store (`open_store`);
`load_snapshot`, `list_snapshots`, `verify_snapshot` and `prune` work on what is
stored; `drd.snapshot.model` is the pure index schema, written and read as a stream
(`drd.snapshot.encode`, `drd.snapshot.reader`): an index is never held whole.
"""
