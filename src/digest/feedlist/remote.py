"""Feed lists from elsewhere: an OPML file fetched by URL, and the feeds of an imported list
screened against the network policy before they reach feeds.opml."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from urllib.parse import urlsplit

from digest.config import FeedsSettings
from digest.errors import FetchError, InputError
from digest.ingest.addresses import literal_refusal
from digest.ingest.fetch import fetch_as_configured, make_client
from digest.types import FeedSource

OPML_ACCEPT = "text/x-opml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def fetch_list(url: str, feeds: FeedsSettings) -> bytes:
    """An OPML file's bytes from ``url``, under the network policy, the size cap and the
    timeout of feed fetches; InputError (one line) when it can't be had."""

    async def get() -> bytes:
        async with make_client(feeds) as client:
            fetched = await fetch_as_configured(client, url, feeds, accept=OPML_ACCEPT)
        if fetched.body is None or not 200 <= fetched.status_code < 300:
            raise InputError(f"{url}: HTTP {fetched.status_code}, no OPML file")
        return fetched.body

    try:
        return asyncio.run(get())
    except FetchError as e:
        raise InputError(f"{url}: {e.message}") from None


def screen(
    sources: Iterable[FeedSource], feeds: FeedsSettings
) -> tuple[list[FeedSource], list[str]]:
    """(the sources digest may poll, a line for each refused one). A feed whose host is an
    address the network policy refuses (127.0.0.1, localhost, 10.0.0.5...) is refused here
    already; a public IP address is kept, with a line saying so."""
    kept: list[FeedSource] = []
    notes: list[str] = []
    for source in sources:
        try:
            host = urlsplit(source.url).hostname
        except ValueError:
            notes.append(f"skipped {source.url}: not a URL")
            continue
        why = literal_refusal(host, feeds.allow_networks)
        if why is not None:
            notes.append(f"skipped {source.url}: {why} (feeds.allow_networks opens a range)")
            continue
        if host and literal_refusal(host) is None and _is_ip(host):
            notes.append(f"note: {source.url} names an IP address, not a host name")
        kept.append(source)
    return kept, notes


def _is_ip(host: str) -> bool:
    name = host.strip("[]")
    return ":" in name or name.replace(".", "").isdigit()
