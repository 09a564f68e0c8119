"""
Which endpoints of a pass can be reached, asked once each and all at once before the
pass starts: a dead target is skipped with one line instead of failing every item after
retries, and a dead source ends the pass before anything is attempted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from drd.errors import RegistryError
from drd.registry.client import RegistryClient

log = structlog.get_logger(__name__)


async def unreachable(clients: Mapping[str, RegistryClient]) -> dict[str, RegistryError]:
    """
    The endpoints among *clients* (by name) that cannot be reached, with why; one
    request each (`RegistryClient.probe`), concurrently. Each one found is logged once.
    """
    async with asyncio.TaskGroup() as group:
        tasks = {name: group.create_task(_why_not(client)) for name, client in clients.items()}
    down = {name: why for name, task in sorted(tasks.items()) if (why := task.result()) is not None}
    for name, why in down.items():
        log.warning("endpoint.unreachable", endpoint=name, error=str(why))
    return down


async def _why_not(client: RegistryClient) -> RegistryError | None:
    """Why *client*'s endpoint cannot be reached; None when it answered."""
    try:
        await client.probe()
    except RegistryError as exc:
        return exc
    return None
