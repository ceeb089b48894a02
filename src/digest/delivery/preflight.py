"""What `digest send` and `digest run` check before any mail goes out.

Refused (one line, exit 1): a DKIM key that can't be read, and a DKIM d= domain not aligned
with the From domain. DMARC (RFC 7489, relaxed alignment) passes a DKIM signature only when
its d= and the From address share an organisational domain (news.example.org and example.org
do; example.net does not): an unrelated d= signs every message and each still fails DMARC,
silently, until Gmail and Yahoo file the newsletter as spam.

Said (a warning), then sent: an http newsletter.base_url. RFC 8058 allows one-click
unsubscribe (List-Unsubscribe-Post) only on an https URI, so the header is left out (see
message.one_click) rather than the send refused: http is the default and what a trial on one
machine uses, and the List-Unsubscribe link and the footer's still work over it.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from digest.config import Settings
from digest.delivery.mail import dkim_signer
from digest.delivery.message import one_click, sender_domain
from digest.errors import ConfigError

log = logging.getLogger(__name__)


def check_sending(settings: Settings) -> None:
    """Raise ConfigError for settings that would make every message fail (nothing when
    sending is off)."""
    if not settings.sending_enabled:
        return
    if dkim_signer(settings) is not None:  # the key is read now, not at the first message
        signing, sending = settings.smtp.dkim_domain.lower(), sender_domain(settings)
        if not aligned(signing, sending):
            raise ConfigError(
                f"smtp.dkim_domain {signing} is not aligned with the From domain {sending} "
                "(newsletter.from): every message would fail DMARC; sign with "
                f"{organisational_domain(sending) or sending} or a domain under it"
            )


def sending_warnings(settings: Settings) -> list[str]:
    """What works but worse than it should: said when a send delivers, and at `digest run`'s
    start."""
    if not settings.sending_enabled or one_click(settings):
        return []
    return [
        f"newsletter.base_url is not https ({settings.newsletter.base_url}): messages go "
        "without List-Unsubscribe-Post, since one-click unsubscribe (RFC 8058) needs https, "
        "and Gmail and Yahoo expect it of bulk senders"
    ]


def warn(settings: Settings) -> None:
    for line in sending_warnings(settings):
        log.warning("%s", line, extra={"fields": {"event": "setup"}})


def aligned(dkim_domain: str, from_domain: str) -> bool:
    """DMARC's relaxed alignment: the same organisational domain (the same domain, when
    either is a public suffix or a name such as localhost)."""
    dkim_domain, from_domain = dkim_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if dkim_domain == from_domain:
        return True
    signing, sending = organisational_domain(dkim_domain), organisational_domain(from_domain)
    return signing is not None and signing == sending


def organisational_domain(domain: str) -> str | None:
    """The registered domain under a public suffix (news.example.co.uk: example.co.uk)."""
    found = _suffix_list().privatesuffix(domain.lower().rstrip("."))
    return str(found) if found else None


@functools.cache
def _suffix_list() -> Any:
    # The Public Suffix List, as the publicsuffixlist package ships it (0.1 s to load).
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()
