"""The curator's desk (`digest preview --serve`): the coming issue as it would be sent now,
with Pick, Skip and Note beside each post and an editor for the intro; rendered again after
each change and on every reload.

It listens on loopback unless told otherwise. Every form POSTs with a token made for this run
of the desk (a page of another site can't read it, so can't forge a change); a POST without
it, from another site's page (Origin) or to another host name (a DNS rebinding) changes
nothing. The stdlib's threading server: one curator, no need for the readers' stack.
"""

from __future__ import annotations

import hmac
import html
import http.server
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address
from typing import Any
from urllib.parse import parse_qs, urlsplit

import lxml.html
from markupsafe import Markup

from digest.config import Settings
from digest.delivery.message import preferences_url, unsubscribe_url
from digest.errors import DigestError
from digest.ingest.health import failing_note
from digest.issue.curation import curate, forget, pending, pending_intro, set_intro
from digest.issue.newsletter import Newsletter, previewed, show
from digest.issue.plan import IssuePlan, coming_window, plan_issue, render_plan
from digest.issue.render import environment
from digest.storage import Database, utcnow
from digest.types import StoredPost, Verdict

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 64 * 1024  # an intro is a paragraph; a form this big is no curator's
DONE = {  # ?done= after a change: the line the page says (never text from the request)
    "pick": "Picked.",
    "skip": "Skipped: it is out of the issue.",
    "undo": "Taken back.",
    "intro": "Intro saved.",
    "clear": "Intro cleared.",
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    location: str | None = None


class Desk:
    """The desk over one database: its pages and what its forms do."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        newsletter: Newsletter,
        as_of: datetime | None,
        host: str,
    ) -> None:
        self.db = db
        self.settings = settings
        self.newsletter = newsletter
        self.as_of = as_of
        self.host = host
        self.token = secrets.token_urlsafe(32)  # this run's: a new run, new pages
        self.env = environment(newsletter.templates)
        self.port = 0  # set once listening
        self.refresh: Callable[[], None] = lambda: None  # before each page (the feed list)

    # ---- pages ---------------------------------------------------------------------------

    def page(self, notice: str = "", error: str = "", status: int = 200) -> Answer:
        self.refresh()
        plan = plan_issue(
            self.db, self.newsletter, previewed(self.newsletter, self.as_of, utcnow())
        )
        zone = self.newsletter.timezone
        window = f"{show(plan.window_start, zone)} – {show(plan.window_end, zone)}"
        context: dict[str, Any] = {
            "title": self.newsletter.title,
            "plan": plan,
            "window": window,
            "ends": plan.ending.describe(zone) if plan.ending else "recorded",
            "token": self.token,
            "notice": notice,
            "error": error,
            "intro": pending_intro(self.db) or "",
            "recorded": plan.issue_id is not None,
            "skipped": [self._post(p, Verdict.SKIP) for p in plan.skipped],
            "unnamed": [],
            "issue_style": "",
            "issue_body": Markup(""),
            "subject": "",
        }
        if not plan.empty:
            context.update(self._issue(plan, read_only=plan.issue_id is not None))
        body = self.env.get_template("web/desk.html.j2").render(context)
        return Answer(status, body.encode())

    def _issue(self, plan: IssuePlan, *, read_only: bool) -> dict[str, Any]:
        """The issue's style and body, a post's controls after each of its elements."""
        health = failing_note(self.db, utcnow())
        _layout, rendered = render_plan(self.db, self.newsletter, plan, health=health, desk=True)
        rendered = rendered.personal(
            unsubscribe_url(self.settings, "preview"), preferences_url(self.settings, "preview")
        )
        doc = lxml.html.document_fromstring(rendered.html)
        style = "\n".join(s.text or "" for s in doc.iter("style"))
        body = doc.find("body")
        assert body is not None
        verdicts = {c.url: c for c in pending(self.db)}
        posts = {p.id: p for p in plan.posts}
        named: set[int] = set()
        controls = self.env.get_template("web/desk_controls.html.j2")
        for element in body.xpath(".//*[@data-post]"):
            post = posts.get(int(element.get("data-post")))
            if post is None:
                continue
            named.add(post.id)
            element.set("id", f"post-{post.id}")
            if read_only:
                continue
            word = verdicts.get(post.canonical_url or "")
            html_text = controls.render(
                post=self._post(post, word.verdict if word else None),
                note=(word.note or "") if word else "",
                token=self.token,
                compact=element.tag != "td",
            )
            element.append(lxml.html.fragment_fromstring(html_text))
        for hidden in body.xpath(".//*[contains(@style, 'display:none')]"):
            hidden.drop_tree()  # the preheader: the desk shows it in its bar
        inner = "".join(lxml.html.tostring(child, encoding="unicode") for child in body)
        unnamed = [self._post(p, None) for p in plan.posts if p.id not in named and not read_only]
        return {
            "issue_style": Markup(style),
            "issue_body": Markup(inner),
            "subject": rendered.subject,
            "preheader": rendered.preheader,
            "unnamed": unnamed,
        }

    def _post(self, post: StoredPost, verdict: Verdict | None) -> dict[str, Any]:
        return {
            "id": post.id,
            "url": post.canonical_url or post.link or "",
            "title": post.title,
            "picked": verdict is Verdict.PICK,
        }

    # ---- forms ---------------------------------------------------------------------------

    def post(self, path: str, form: dict[str, str], headers: Any) -> Answer:
        """A form's POST: checked, then done; the page again (303), or why not."""
        refusal = self._refusal(form, headers)
        if refusal:
            log.warning("desk: refused a POST to %s: %s", path, refusal)
            body = self.env.get_template("web/desk_refused.html.j2").render(
                title=self.newsletter.title, why=refusal
            )
            return Answer(403, body.encode())
        action = path.strip("/")
        url = form.get("url", "")
        anchor = f"#post-{form['post']}" if form.get("post", "").isdigit() else ""
        try:
            if action in ("pick", "skip"):
                verdict = Verdict.PICK if action == "pick" else Verdict.SKIP
                now = utcnow()
                coming = coming_window(self.db, self.newsletter, now)
                note = form.get("note") if action == "pick" else None
                curate(
                    self.db,
                    url,
                    verdict,
                    now,
                    coming=coming,
                    zone=self.newsletter.timezone,
                    note=note,
                )
            elif action == "undo":
                forget(self.db, url)
            elif action == "intro":
                clear = "clear" in form or not form.get("intro", "").strip()
                set_intro(self.db, None if clear else form["intro"])
                action = "clear" if clear else "intro"
            else:
                return Answer(404, b"no such form")
        except DigestError as e:
            return self.page(error=str(e), status=400)
        return Answer(303, b"", f"/?done={action}{anchor}")

    def _refusal(self, form: dict[str, str], headers: Any) -> str | None:
        given = form.get("csrf", "")
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            return (
                "the form's token is missing or from an earlier run of the desk: reload the "
                "page and try again"
            )
        origin = headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != headers.get("Host", ""):
            return f"the form came from another site ({origin})"
        if _loopback(self.host) and not _loopback_name(headers.get("Host", ""), self.port):
            return "the request names another host than this desk's"
        return None


def _loopback(host: str) -> bool:
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _loopback_name(host_header: str, port: int) -> bool:
    name, _, given_port = host_header.rpartition(":")
    return given_port == str(port) and (name == "localhost" or _loopback(name))


def make_server(desk: Desk, host: str, port: int) -> http.server.ThreadingHTTPServer:
    """The desk's server, listening (port 0: one the system picks)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the stdlib's name
            query = parse_qs(urlsplit(self.path).query)
            notice = DONE.get(query.get("done", [""])[0], "")
            self._answer(lambda: desk.page(notice=notice))

        def do_POST(self) -> None:  # the stdlib's name
            length = int(self.headers.get("Content-Length") or 0)
            kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if length > MAX_FORM_BYTES or kind != "application/x-www-form-urlencoded":
                self._send(Answer(400, b"a form of at most 64 KB, url-encoded"))
                return
            raw = self.rfile.read(length).decode("utf-8", "replace")
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            path = urlsplit(self.path).path
            self._answer(lambda: desk.post(path, form, self.headers))

        def _answer(self, make: Callable[[], Answer]) -> None:
            try:
                answer = make()
            except Exception as e:
                log.exception("desk: the page failed")
                text = f"<pre>{html.escape(type(e).__name__)}: {html.escape(str(e))}</pre>"
                answer = Answer(500, text.encode())
            self._send(answer)

        def _send(self, answer: Answer) -> None:
            self.send_response(answer.status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(answer.body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Referrer-Policy", "no-referrer")
            if answer.location:
                self.send_header("Location", answer.location)
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    desk.port = server.server_port
    return server


def serve_desk(desk: Desk, host: str, port: int, say: Callable[[str], None]) -> None:
    """Serve until Ctrl-C."""
    server = make_server(desk, host, port)
    shown = f"[{host}]" if ":" in host else host
    say(
        f"the curator's desk on http://{shown}:{server.server_port}/ "
        "(rendered again after each change and on every reload; Ctrl-C stops)"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
