"""Feed lists from elsewhere: an OPML file fetched by URL, and the feeds of an imported list
screened against the network policy, and their rules set aside, before they reach feeds.opml."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from digest.config import FeedsSettings
from digest.errors import ConfigError, FetchError, InputError
from digest.feedlist.rules import ATTRIBUTES, rules_from_attributes
from digest.ingest.addresses import literal_refusal
from digest.ingest.fetch import fetch_as_configured, make_client
from digest.patterns import shown
from digest.types import FeedRules, FeedSource

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


@dataclass
class ImportedRules:
    """Reads an imported list's rules (parse_opml's ``read_rules``). Rules are regular
    expressions run on every post, and an OPML file may come from anyone: they are dropped,
    each feed's with a line showing them, unless ``keep`` (`opml import --keep-rules`, after
    reading them); kept ones are checked as the feed list's own, and a bad one is dropped
    with its reason, the feed imported without it."""

    keep: bool = False
    notes: list[str] = field(default_factory=list)
    dropped: int = 0

    def __call__(self, attributes: Mapping[str, str], where: str) -> FeedRules:
        found = {k: v for k, v in attributes.items() if k in ATTRIBUTES and v.strip()}
        if not found:
            return FeedRules()
        if self.keep:
            try:
                return rules_from_attributes(attributes, where)
            except ConfigError as e:
                self._drop(f"{e}; its rules dropped")
                return FeedRules()
        listed = ", ".join(f"{name}={shown(value)}" for name, value in found.items())
        self._drop(f"{where}: rules dropped ({listed}): --keep-rules keeps them")
        return FeedRules()

    def _drop(self, note: str) -> None:
        self.dropped += 1
        self.notes.append(note)
