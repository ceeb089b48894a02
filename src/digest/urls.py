"""URL repair and normalisation: links as feeds give them → links we store and compare; and
the site a host belongs to (what the per-host cap counts as one host)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

# Query parameters that only track the click; dropping them makes equal articles compare equal.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "ref_src",
        "_hsenc",
        "_hsmi",
        "igshid",
        "yclid",
        "mkt_tok",
        "s_kwcid",
    }
)
_BROKEN_SCHEME = re.compile(r"^(https?)(?:%3A|%3a)(//)?", re.IGNORECASE)
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ABSOLUTE = re.compile(r"https?://", re.IGNORECASE)
# Second-level labels under which a country's domains are registered (bbc.co.uk, abc.net.au).
_SECOND_LEVELS = frozenset({"ac", "co", "com", "edu", "go", "gov", "ne", "net", "or", "org"})


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
    # urljoin leaves an absolute http(s) URL as it is: skip it (most feed links are absolute).
    if base and not _ABSOLUTE.match(text):
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
    path = _normalize_escapes(re.sub(r"/{2,}", "/", parts.path) or "/")
    query = quote(_without_tracking(parts.query), safe=_SAFE_QUERY)
    return urlunsplit((scheme, host, path, query, _routing_fragment(parts.fragment)))


def _routing_fragment(fragment: str) -> str:
    # A fragment only points inside the page, except on sites that route by it ("#/post/1").
    return fragment if fragment.startswith(("/", "!/")) else ""


def _normalize_escapes(path: str) -> str:
    """One spelling per path (RFC 3986 6.2.2): escapes upper-cased, unreserved ones decoded.

    Escaped reserved characters (``%2F``, ``%25``) keep their meaning: never unquote them.
    """
    path = quote(_LONE_PERCENT.sub("%25", path), safe=_SAFE_PATH)

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _ESCAPE.sub(fix, path)


def _without_tracking(query: str) -> str:
    """The query with click-tracking parameters taken out; everything else kept byte for byte.

    A bare query such as cks's "?atom" is kept: it is the resource, not a parameter.
    """
    if not query:
        return ""
    pairs = query.split("&")
    kept = [pair for pair in pairs if pair and not _is_tracking(unquote(pair.split("=", 1)[0]))]
    return query if len(kept) == len(pairs) else "&".join(kept)


def canonical_url(url: str, *, normalized: bool = False) -> str:
    """A key for spotting the same article across feeds: scheme, www., slashes, index pages.

    ``normalized``: ``url`` already came out of normalize_link (a parsed post's link).
    """
    link = url if normalized else normalize_link(url) or url.strip()
    parts = urlsplit(link)
    host = (parts.hostname or "").removeprefix("www.")
    if parts.port:
        host = f"{host}:{parts.port}"
    path = re.sub(r"/index\.(html?|php)$", "/", parts.path).rstrip("/")
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    if parts.query and not query:
        query = parts.query
    return urlunsplit(("https", host, path, query, _routing_fragment(parts.fragment)))


def site_of(url: str) -> str:
    """The site a URL's host belongs to, which the per-host cap counts as one: its domain.

    karpathy.github.io and colah.github.io are one site (GitHub Pages serves both), and so
    are substack.com's and blogspot.com's authors. An IP address is a site of its own. A
    public suffix this rule does not know (city.kawasaki.jp) is taken for a site, so an
    error groups more hosts together: the cap errs towards politeness, never against it.
    """
    try:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:  # "http://[not a host/": a site of its own; fetching it says why
        return url
    if ":" in host or host.replace(".", "").isdigit():
        return host
    labels = host.split(".")
    country_level = len(labels) > 2 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVELS
    return ".".join(labels[-3:] if country_level else labels[-2:])
