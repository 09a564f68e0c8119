"""
Snapshot stores: the `SnapshotStore` interface (`base`), a local folder (`dir`),
S3 (`s3`); `open_store` (`open`) picks one from a ``[snapshots] store`` URL.
"""
