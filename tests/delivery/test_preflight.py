"""Checked before mail goes out: DKIM aligned with From (refused otherwise), one-click
unsubscribe only over https (issue 23)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.config import Settings
from digest.delivery.message import PreparedEmail
from digest.errors import ConfigError
from digest.types import RenderedEmail
from tests.conftest import run_cli, run_digest
from tests.poll_helpers import write_opml
from tests.smtp_helpers import FlakySMTP, make_dkim_key
from tests.test_cli_delivery import week_of_posts


@pytest.mark.parametrize(
    ("dkim", "sender", "ok"),
    [
        ("example.org", "example.org", True),
        ("example.org", "news.example.org", True),  # d= the organisational domain
        ("mail.example.org", "news.example.org", True),  # relaxed: the same organisation
        ("news.example.org", "example.org", True),
        ("example.co.uk", "news.example.co.uk", True),
        ("example.net", "example.org", False),
        ("co.uk", "example.co.uk", False),  # a public suffix is nobody's domain
        ("other.co.uk", "example.co.uk", False),
        ("ann.github.io", "bob.github.io", False),  # a shared host's names are its users'
        ("localhost", "localhost", True),
    ],
)
def test_relaxed_alignment(dkim: str, sender: str, ok: bool) -> None:
    from digest.delivery.preflight import aligned

    assert aligned(dkim, sender) is ok


@pytest.fixture
def sink() -> Iterator[FlakySMTP]:
    server = FlakySMTP()
    yield server
    server.close()


def env_for(sqlite_url: str, sink: FlakySMTP, key: Path, domain: str) -> dict[str, str]:
    return {
        "DIGEST_DATABASE_URL": sqlite_url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(sink.port),
        "DIGEST_NEWSLETTER_FROM": "Weekend Reading <news@example.org>",
        "DIGEST_NEWSLETTER_BASE_URL": "https://news.example.org",
        "DIGEST_SMTP_DKIM_SELECTOR": "s1",
        "DIGEST_SMTP_DKIM_DOMAIN": domain,
        "DIGEST_SMTP_DKIM_KEY_FILE": str(key),
    }


def test_send_and_run_refuse_a_dkim_domain_unrelated_to_from(
    sqlite_url: str, sink: FlakySMTP, tmp_path: Path
) -> None:
    key, _public = make_dkim_key(tmp_path)
    env = env_for(sqlite_url, sink, key, "example.net")
    assert run_cli(["subscribers", "add", "ann@example.com"], env).exit_code == 0
    week_of_posts(sqlite_url)
    sent = run_cli(["send", "--as-of", "2026-01-10T08:00Z"], env)
    assert sent.exit_code == 1
    assert sent.output.count("\n") == 1
    assert "smtp.dkim_domain example.net is not aligned with the From domain example.org" in (
        sent.output
    )
    assert sink.recipients() == []
    aligned_env = env | {"DIGEST_SMTP_DKIM_DOMAIN": "example.org"}
    assert run_cli(["send", "--as-of", "2026-01-10T08:00Z"], aligned_env).exit_code == 0
    assert sink.recipients() == ["ann@example.com"]
    opml = write_opml(tmp_path / "feeds.opml", [])
    daemon = run_digest(["run"], env | {"DIGEST_FEEDS_OPML": str(opml)}, tmp_path, timeout=60)
    assert daemon.returncode == 1
    assert "is not aligned with the From domain" in daemon.stderr


def test_one_click_unsubscribe_only_over_https() -> None:
    from digest.delivery.preflight import sending_warnings

    rendered = RenderedEmail("Weekend Reading #1", "<p>hi</p>", "hi")
    sending = Settings().replace(smtp={"host": "127.0.0.1"})
    for base_url, post in (("https://news.example.org", True), ("http://news.example.org", False)):
        settings = sending.replace(newsletter={"base_url": base_url})
        raw = PreparedEmail(rendered, settings).render(
            to="a@example.com", unsubscribe_url=f"{base_url}/unsubscribe/t"
        )
        assert (b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw) is post
        assert f"List-Unsubscribe: <{base_url}/unsubscribe/t>".encode() in raw
        warnings = sending_warnings(settings)
        assert bool(warnings) is not post
    (warning,) = sending_warnings(sending.replace(newsletter={"base_url": "http://x.example"}))
    assert "without List-Unsubscribe-Post" in warning and "https" in warning


def test_an_unreadable_key_is_refused_before_sending(tmp_path: Path) -> None:
    from digest.delivery.preflight import check_sending

    settings = Settings().replace(
        smtp={
            "host": "127.0.0.1",
            "dkim_selector": "s1",
            "dkim_domain": "example.org",
            "dkim_key_file": tmp_path / "missing.pem",
        }
    )
    with pytest.raises(ConfigError, match="smtp.dkim_key_file: cannot read"):
        check_sending(settings)
