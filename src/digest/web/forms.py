"""What the readers' forms share: a capped body, read as a urlencoded form; the CSRF token
each form carries; where a request comes from (the client address, same-origin or not)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from digest.delivery.tokens import check_form_token, make_form_token
from digest.errors import InputError

if TYPE_CHECKING:
    from digest.web.site import Site

Form = dict[str, list[str]]

# The largest honest form: an address (320 bytes), a name (200 characters, 12 bytes each
# when percent-encoded UTF-8), the sections, a token and the field names: under 4 KB.
MAX_BODY = 8192
MAX_FIELDS = 16
# A form's CSRF token lives this long: a page left open overnight still works.
FORM_TTL = timedelta(days=1)
FORM_TYPE = "application/x-www-form-urlencoded"


class FormError(InputError):
    """A body we won't read: too large (413), not a form (415), from another site (403)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def take_form(
    request: Request, site: Site, handle: Callable[[Form, str | None], Response]
) -> Response:
    """A POSTed form and the client's address handed to ``handle`` in a worker thread (it
    touches the database); a body that isn't our form gets the "refused" page."""
    try:
        form = await read_form(request)
    except FormError as e:
        return site.page("refused", e.status, private=True, reason=e.reason)
    return await run_in_threadpool(handle, form, client_address(request))


async def read_form(request: Request, *, check_origin: bool = True) -> Form:
    """The urlencoded body of a POST from one of our pages, at most MAX_BODY bytes, read
    without buffering more than that; FormError otherwise."""
    if check_origin and not same_origin(request):
        raise FormError(403, "This form was sent from another site.")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (FORM_TYPE, ""):  # "": an empty body (a button with no fields)
        raise FormError(415, "This page only takes its own form.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise FormError(413, "That was far more than a sign-up form holds.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise FormError(413, "That was far more than a sign-up form holds.")
    if body and not content_type:
        raise FormError(415, "This page only takes its own form.")
    try:
        text = body.decode("utf-8")
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise FormError(400, "That form could not be read.") from None


async def peek_form(request: Request) -> Form:
    """The body as a form when it is a small urlencoded one, else {}: for one-click
    unsubscribe, which acts whatever the body (RFC 8058) unless it is one of our own forms."""
    try:
        return await read_form(request, check_origin=False)
    except FormError:
        return {}


def field(form: dict[str, list[str]], name: str) -> str:
    """A form field's first value, "" when missing."""
    values = form.get(name)
    return values[0] if values else ""


def same_origin(request: Request) -> bool:
    """False for a request another site's page made the browser send (CSRF): browsers say so
    in Sec-Fetch-Site, and in Origin (which is "null" for our own forms: our pages send no
    referrer). A request without either (curl, an old browser) passes: the token decides."""
    site = request.headers.get("sec-fetch-site", "")
    if site not in ("", "same-origin", "none"):
        return False
    origin = request.headers.get("origin", "")
    if origin in ("", "null"):
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].lower() == host.lower()


def client_address(request: Request) -> str | None:
    """The client's address as uvicorn saw it (X-Forwarded-For is trusted from a reverse
    proxy on 127.0.0.1 only: uvicorn's forwarded_allow_ips)."""
    return request.client.host if request.client else None


def form_token(key: str, form: str, subject: int, now: datetime) -> str:
    return make_form_token(key, form, subject, now + FORM_TTL)


def form_token_ok(
    key: str, form_data: dict[str, list[str]], form: str, subject: int, now: datetime
) -> bool:
    return check_form_token(key, field(form_data, "csrf"), form, subject, now)
