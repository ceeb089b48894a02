"""URL repair and normalisation: links as feeds give them → links we store and compare."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

# Query parameters that only track the click; dropping them makes equal articles compare equal.
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "ref_src", "_hsenc", "_hsmi",
     "igshid", "yclid", "mkt_tok", "s_kwcid"}
)
_BROKEN_SCHEME = re.compile(r"^(https?)(?:%3A|%3a)(//)?", re.IGNORECASE)
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"


def repair(url: str) -> str:
    """Undo breakage seen in real feeds: ``http%3A//host`` (Zola), stray spaces, ``feed:``."""
    url = url.strip().replace("\\", "/")
    url = _BROKEN_SCHEME.sub(lambda m: m.group(1) + "://", url, count=1)
    if url.lower().startswith("feed://"):
        url = "http://" + url[7:]
    return url.replace(" ", "%20")


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("utm_") or lowered in TRACKING_PARAMS


def normalize_link(url: str | None, base: str | None = None) -> str | None:
    """An absolute http(s) URL, repaired and tidied; None when there is nothing usable."""
    if not url or not url.strip():
        return None
    text = repair(url)
    if base:
        text = urljoin(repair(base), text)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower().rstrip(".")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    path = re.sub(r"/{2,}", "/", parts.path) or "/"
    path = quote(unquote(path), safe=_SAFE_PATH)
    query = parts.query
    if query and "=" in query:
        kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if not _is_tracking(k)]
        query = urlencode(kept, doseq=True)
    # A bare query such as cks's "?atom" is kept exactly: it is the resource, not a parameter.
    return urlunsplit((scheme, host, path, query, ""))


def canonical_url(url: str) -> str:
    """A key for spotting the same article across feeds: scheme, www., slashes, index pages."""
    link = normalize_link(url) or url.strip()
    parts = urlsplit(link)
    host = (parts.hostname or "").removeprefix("www.")
    if parts.port:
        host = f"{host}:{parts.port}"
    path = re.sub(r"/index\.(html?|php)$", "/", parts.path).rstrip("/")
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    if parts.query and not query:
        query = parts.query
    return urlunsplit(("https", host, path, query, ""))
