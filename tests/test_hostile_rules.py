"""Issue 23, "Issue build", end to end through `digest`: an OPML file imported by URL (a
loopback HTTP server) carries a catastrophic skip rule `(a+)+$`, 5,000 nested groups and a
1 MB rule. By default every rule of the file is dropped with a line showing it; with
--keep-rules the sound ones stay (RE2 runs `(a+)+$` in linear time) and the bad ones are
dropped with their reason; the poll and the preview then finish, the other rules working."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_digest
from tests.servers import FeedServer, Response
from tests.test_cli_rules import END, rss
from tests.test_operator_month import write_lists

WEEK = ["preview", "--as-of", END.isoformat(), "--format", "text", "-o", "-"]
NESTED = "(" * 5000 + "a" + ")" * 5000
HUGE = "a|" * 500_000  # 1 MB: the 9.5 MB one is tests/test_patterns.py's


def hostile_list(http: FeedServer) -> str:
    outlines = [
        ("Evil", "/evil.xml", "(a+)+$"),
        ("Nested", "/nested.xml", NESTED),
        ("Huge", "/huge.xml", HUGE),
    ]
    body = "".join(
        f'<outline text="{name}" xmlUrl="{http.url(path)}" skip="{rule}"/>'
        for name, path, rule in outlines
    )
    document = f'<?xml version="1.0"?><opml version="2.0"><body><outline text="ML">{body}'
    http.route("/list.opml", Response(200, (document + "</outline></body></opml>").encode()))
    return http.url("/list.opml")


def test_an_imported_hostile_rule_neither_hangs_nor_breaks_the_issue(
    workdir: Path, http: FeedServer
) -> None:
    http.route("/links.xml", Response(200, rss("https://links.example", [
        ("Weeknotes 12", []), ("An essay", []),
    ])))  # fmt: skip
    # `re` took 2.2 s for 24 a's and a "!", doubling with each letter: 60 would be forever.
    http.route("/evil.xml", Response(200, rss("https://evil.example", [
        ("a" * 60 + "!", []), ("aaaa", []),
    ])))  # fmt: skip
    http.route("/nested.xml", Response(200, rss("https://nested.example", [("Nested post", [])])))
    http.route("/huge.xml", Response(200, rss("https://huge.example", [("Huge post", [])])))
    write_lists(workdir, {"Links": f'{http.url("/links.xml")} — skip: "(?i)weeknotes"'})
    env = {
        "DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'digest.db'}",
        "DIGEST_FEEDS_FETCH_PAGES": "false",
    }
    assert run_digest(["opml", "build", "--no-discover"], env, workdir).returncode == 0
    url = hostile_list(http)

    # The default: every rule of the file dropped, each feed's shown (cut) on one line.
    elsewhere = {**env, "DIGEST_FEEDS_OPML": str(workdir / "elsewhere.opml")}
    dropped = run_digest(["opml", "import", url], elsewhere, workdir)
    assert dropped.returncode == 0, dropped.stderr
    assert f"{url}: 3 feeds added, 0 already present, the rules of 3 feeds dropped" in (
        dropped.stdout
    )
    lines = dropped.stderr.splitlines()
    assert f'{url}: feed {http.url("/evil.xml")}: rules dropped (skip="(a+)+$"): ' \
        "--keep-rules keeps them" in lines  # fmt: skip
    assert any("(1,000,000 characters)" in line and len(line) < 300 for line in lines)
    assert "skip=" not in (workdir / "elsewhere.opml").read_text()

    # --keep-rules: the sound rule kept, the nested and the huge ones dropped with their reason.
    kept = run_digest(["opml", "import", "--keep-rules", url], env, workdir)
    assert kept.returncode == 0, kept.stderr
    assert "the rules of 2 feeds dropped" in kept.stdout and "Traceback" not in kept.stderr
    assert f"feed {http.url('/huge.xml')}: skip: bad regular expression" in kept.stderr
    assert "longer than 500 characters (1,000,000)" in kept.stderr
    opml = (workdir / "feeds.opml").read_text()
    assert 'skip="(a+)+$"' in opml and NESTED not in opml and HUGE not in opml

    polled = run_digest(["poll"], env, workdir, timeout=60)
    assert polled.returncode == 0, polled.stderr
    preview = run_digest(WEEK, env, workdir, timeout=60)  # the old code: still matching
    assert preview.returncode == 0, preview.stderr
    text = preview.stdout
    assert "Weeknotes 12" not in text and "An essay" in text  # the list's own rule works
    # `(a+)+$`, in linear time: "aaaa" (evil.example/1) skipped, the 60 a's and "!" shown.
    assert "https://evil.example/1" not in text and "https://evil.example/0" in text
    assert "Nested post" in text and "Huge post" in text  # imported, without their rules
