"""`digest migrate --to URL` (issue 24): SQLite to PostgreSQL and back, nothing lost: the
archive, the numbering, the signing key (old unsubscribe links), subscribers' history, the
delivery log, curations and bounces; one transaction into an empty database only."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from digest.bounces.apply import apply_report
from digest.config import Settings
from digest.delivery.subscribers import list_subscribers
from digest.delivery.tokens import signing_key
from digest.issue.curation import curate
from digest.models import Base
from digest.storage import Database, utcnow
from digest.transfer import BATCH
from digest.types import BounceKind, BounceReport, Verdict
from digest.web import make_app
from tests.conftest import PG_URL, run_cli, run_digest
from tests.issue_helpers import SAT, add_feed, add_post
from tests.servers import SMTPSink

WEEKS = [SAT + timedelta(days=7 * k) for k in range(4)]
BASE = "https://news.example.org"
COMPLAINT = BounceKind.COMPLAINT


def settings_env(url: str, smtp: SMTPSink) -> dict[str, str]:
    return {
        "DIGEST_DATABASE_URL": url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp.port),
        "DIGEST_NEWSLETTER_BASE_URL": BASE,
        "DIGEST_FEEDS_OPML": "none.opml",
    }


def ok(args: list[str], env: dict[str, str]) -> str:
    result = run_cli(args, env)
    assert result.exit_code == 0, result.output
    return result.output


def three_sent_issues(url: str, smtp: SMTPSink) -> str:
    """A database with 3 sent issues, subscribers who came and went, curations spent and one
    pending, bounces and a complaint; the path of issue #1's unsubscribe link to ann."""
    env = settings_env(url, smtp)
    db = Database(url)
    blogs = [add_feed(db, "Deep Blog", "ml"), add_feed(db, "Kernel Blog", "systems")]
    for week, saturday in enumerate(WEEKS):
        for k, blog in enumerate(blogs):
            title, link = f"Week {week + 1} post {k}", f"https://blogs.example/w{week}/{k}"
            add_post(db, blog, title, date=saturday - timedelta(days=2 + k), link=link)
    for address in ("ann@example.com", "bob@example.com", "cat@example.com"):
        ok(["subscribers", "add", address], env)
    ok(["subscribers", "add", "dan@example.com", "--sections", "systems"], env)
    # The curator's word set in place (`digest pick` names only posts the coming issue can
    # hold, and these weeks are long gone): a pick spent by issue #1, a skip still pending.
    assert curate(db, "https://blogs.example/w0/1", Verdict.PICK, utcnow()).title
    for saturday in WEEKS[:3]:
        ok(["send", "--as-of", saturday.isoformat()], env)
    curate(db, "https://blogs.example/w3/0", Verdict.SKIP, utcnow())  # pending
    ok(["subscribers", "remove", "dan@example.com"], env)
    key = signing_key(db, Settings())
    for address, kind in (("bob@example.com", BounceKind.SOFT), ("cat@example.com", COMPLAINT)):
        report = BounceReport(kind=kind, note="test", recipients=(address,))
        apply_report(
            db, Settings(), key, report, source="test", identity=address, authenticated=True
        )
    db.dispose()
    first = next(m for m in map(message_from_bytes, smtp.raw) if m["To"] == "ann@example.com")
    assert "#1" in first["Subject"]
    return str(first["List-Unsubscribe"]).strip("<>").removeprefix(BASE)


def counts(url: str) -> dict[str, int]:
    db = Database(url, create=False)
    with db.session() as s:
        found = {
            t.name: s.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }
    db.dispose()
    return found


def pages(url: str) -> dict[str, str]:
    """Every issue's web version and the archive, as a reader gets them."""
    db = Database(url, create=False)
    settings = Settings().replace(newsletter={"base_url": BASE})
    with TestClient(make_app(db, settings), follow_redirects=False) as client:
        found = {
            path: client.get(path).text for path in ("/", "/issues/1", "/issues/2", "/issues/3")
        }
    db.dispose()
    return found


@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL (DIGEST_TEST_DATABASE_URL)")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_sqlite_to_postgresql_and_back_loses_nothing(
    workdir: Path, db_url: str, smtp: SMTPSink
) -> None:
    sqlite_a, sqlite_b, pg = (
        f"sqlite:///{workdir / 'a.db'}",
        f"sqlite:///{workdir / 'b.db'}",
        db_url,
    )
    unsubscribe = three_sent_issues(sqlite_a, smtp)
    before, rows = pages(sqlite_a), counts(sqlite_a)
    assert rows["issues"] == 3 and rows["bounce_events"] == 2 and rows["curations"] == 2

    there = run_digest(["migrate", "--to", pg], {"DIGEST_DATABASE_URL": sqlite_a}, workdir)
    assert there.returncode == 0, there.stderr
    assert there.stdout.startswith(f"copied sqlite:///{workdir / 'a.db'} to postgresql+psycopg://")
    back = run_cli(["migrate", "--to", sqlite_b, "--json"], {"DIGEST_DATABASE_URL": pg})
    assert back.exit_code == 0, back.output  # and back, in this process

    meta_rows = rows.pop("meta")
    for url in (pg, sqlite_b):
        assert pages(url) == before  # /issues/N and the archive, byte for byte
        copied = counts(url)
        assert copied.pop("meta") == meta_rows  # the signing key and the send state; no lock
        assert copied == rows
    for url in (pg, sqlite_b):  # an unsubscribe link from issue #1 still works; the next is #4
        env = settings_env(url, smtp)
        db = Database(url, create=False)
        with TestClient(make_app(db, Settings()), follow_redirects=False) as client:
            assert client.post(unsubscribe).status_code == 200
        assert {s.email: s.status for s in list_subscribers(db)}[
            "ann@example.com"
        ] == "unsubscribed"
        db.dispose()
        ok(["subscribers", "add", "eve@example.com"], env)  # new ids: past the copied ones
        assert "issue #4:" in ok(["send", "--as-of", WEEKS[3].isoformat()], env)

    refused = run_cli(["migrate", "--to", pg], {"DIGEST_DATABASE_URL": sqlite_a})
    assert refused.exit_code == 1
    assert refused.stderr.endswith("migrate copies into an empty database only\n")
    assert "rows in feeds" in refused.stderr


def test_a_failed_copy_leaves_the_target_empty(
    workdir: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transaction: a copy that fails part-way (here, in the posts) commits nothing."""
    db = Database(sqlite_url)
    blog = add_feed(db, "Deep Blog")
    for k in range(BATCH + 5):
        add_post(db, blog, f"Post {k}", date=SAT)
    db.dispose()
    import digest.transfer

    real = digest.transfer._copy

    def failing(src: object, dst: object, table: object) -> int:
        if getattr(table, "name", "") == "posts":
            raise RuntimeError("disk full")
        return real(src, dst, table)  # type: ignore[arg-type]

    monkeypatch.setattr(digest.transfer, "_copy", failing)
    target = f"sqlite:///{workdir / 'target.db'}"
    with pytest.raises(RuntimeError):
        run_cli(["migrate", "--to", target], {"DIGEST_DATABASE_URL": sqlite_url})
    assert sum(counts(target).values()) == 0
    monkeypatch.setattr(digest.transfer, "_copy", real)
    done = run_cli(["migrate", "--to", target, "--json"], {"DIGEST_DATABASE_URL": sqlite_url})
    assert done.exit_code == 0, done.output
    assert counts(target)["posts"] == BATCH + 5
