"""drd: disaster recovery and replication for OCI registries."""

__version__ = "0.1.0"
