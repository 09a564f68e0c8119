"""The one seam to OCI registries: auth, transport, and the distribution API client."""

from drd.registry.client import Limits, RegistryClient
from drd.registry.transport import TLSSettings, build_http_client

__all__ = ["Limits", "RegistryClient", "TLSSettings", "build_http_client"]
