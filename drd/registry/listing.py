"""
Tag-list and catalog pages, parsed as they stream in.

A page is never held whole: ijson parses it from the socket, entry by entry, so a
hostile 32 MiB page of one-letter tags costs the entries kept, not the page and a
parsed copy of it (a million small strings is a hundred MiB).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import aiohttp
import ijson  # type: ignore[import-untyped]  # ijson ships no type information

_READ = 64 * 1024


class PageUnreadable(ValueError):
    """A page is not JSON, not the expected shape, or too large; the message says which."""


class _Bounded:
    """The reader ijson pulls from: at most *limit* bytes, then `PageUnreadable`."""

    def __init__(self, reader: aiohttp.StreamReader, limit: int) -> None:
        self._reader = reader
        self._limit = limit
        self._count = 0

    async def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""  # ijson's probe for bytes or text: it must consume nothing
        chunk = await self._reader.read(size if size > 0 else _READ)
        self._count += len(chunk)
        if self._count > self._limit:
            raise PageUnreadable("is too large")
        return chunk


async def page_entries(
    reader: aiohttp.StreamReader, key: str, *, byte_limit: int
) -> AsyncGenerator[str, None]:
    """
    Each string in the page's ``key`` array (``{"tags": [...]}``), in order, as parsed.

    A missing or null array yields nothing. Raises `PageUnreadable` for a body that is
    not JSON ("is not JSON"), an array that is not one of strings ("is malformed"), or
    more than *byte_limit* bytes ("is too large").
    """
    try:
        async for prefix, event, value in ijson.parse_async(_Bounded(reader, byte_limit)):
            if prefix == key and event not in ("start_array", "end_array", "null"):
                raise PageUnreadable("is malformed")
            if prefix == f"{key}.item":
                if event != "string":
                    raise PageUnreadable("is malformed")
                yield value
    except ijson.JSONError as exc:
        raise PageUnreadable("is not JSON") from exc
