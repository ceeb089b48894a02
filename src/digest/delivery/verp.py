"""The envelope sender of our mail: the bounce address, tagged per subscriber (VERP) with an HMAC
so a bounce names its subscriber and issue even when the report itself is mangled; no I/O.

``bounces+12.345.TAG@news.example.org``: issue id 12 (0: no issue), subscriber id 345, TAG the
first 80 bits of an HMAC-SHA256 over both and the address, in lower-case base32 (some servers
lower-case the local part on the way back). A forged or altered tag names nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from email.utils import parseaddr

from digest.config import Settings
from digest.delivery.message import default_list_id

_PURPOSE = b"digest/verp/v1"
_MAC_BYTES = 10  # 80 bits: 16 base32 characters, the local part stays under 64
# The largest id a row of ours can have (PostgreSQL's integer): a tag naming more is forged.
MAX_ID = 2**31 - 1
_TAG = re.compile(r"([0-9]{1,12})\.([1-9][0-9]{0,11})\.([a-z2-7]{16})")


@dataclass(frozen=True)
class VerpTag:
    """What a tag claims: checked against the subscriber's address before it is believed."""

    issue_id: int | None
    subscriber_id: int
    mac: str


def envelope_sender(
    settings: Settings, key: str, subscriber_id: int | None, email: str, issue_id: int | None
) -> str:
    """MAIL FROM of one message: the From address without a bounce address; the bounce address,
    tagged for the subscriber when newsletter.verp is on and they are one."""
    bounce = settings.newsletter.bounce_address
    if not bounce:
        return parseaddr(settings.newsletter.from_addr)[1]
    if not settings.newsletter.verp or subscriber_id is None:
        return bounce
    local, _, domain = bounce.rpartition("@")
    return f"{local}+{make_tag(key, subscriber_id, email, issue_id)}@{domain}"


def make_tag(key: str, subscriber_id: int, email: str, issue_id: int | None) -> str:
    mac = _mac(key, issue_id or 0, subscriber_id, email)
    return f"{issue_id or 0}.{subscriber_id}.{mac}"


def read_tag(bounce_address: str, address: str) -> VerpTag | None:
    """The tag of ``address`` when it is the bounce address with one (not yet checked)."""
    local, _, domain = address.strip().strip("<>").lower().rpartition("@")
    base_local, _, base_domain = bounce_address.lower().rpartition("@")
    if domain != base_domain or not local.startswith(base_local + "+"):
        return None
    match = _TAG.fullmatch(local[len(base_local) + 1 :])
    if match is None:
        return None
    issue = int(match.group(1))
    return VerpTag(issue or None, int(match.group(2)), match.group(3))


def could_be_ours(tag: VerpTag) -> bool:
    """Whether the ids a tag names fit our ids (a larger one is forged, and looking it up
    would overflow PostgreSQL's integer)."""
    return max(tag.subscriber_id, tag.issue_id or 0) <= MAX_ID


def check_tag(key: str, tag: VerpTag, email: str) -> bool:
    """True when ``tag`` was made with ``key`` for this subscriber's address (and its issue)."""
    expected = _mac(key, tag.issue_id or 0, tag.subscriber_id, email)
    return hmac.compare_digest(tag.mac.encode("ascii"), expected.encode("ascii"))


def feedback_id(settings: Settings, issue_number: int | None) -> str:
    """Gmail's Feedback-ID, ``campaign:list:type:sender``: the issue, the list, the sender."""
    slug = default_list_id(settings).rpartition("<")[2].rstrip(">").split(".")[0]
    campaign = f"issue{issue_number}" if issue_number is not None else "single"
    return f"{campaign}:{slug}:newsletter:digest"


def _mac(key: str, issue_id: int, subscriber_id: int, email: str) -> str:
    message = b"\0".join(
        (_PURPOSE, str(issue_id).encode(), str(subscriber_id).encode(), email.lower().encode())
    )
    digest = hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.b32encode(digest).decode("ascii").lower()
