from datetime import timedelta
from pathlib import Path

import pytest

from digest.config import declared
from digest.configfile import effective, load_settings
from digest.errors import ConfigError
from digest.settingvalues import parse_duration, parse_send_at
from tests.conftest import run_cli


def test_defaults(workdir: Path) -> None:
    s = load_settings(env={})
    assert s.database.url == "sqlite:///digest.db"
    assert s.feeds.opml == Path("feeds.opml")
    assert s.feeds.poll_interval == timedelta(hours=1)
    assert s.newsletter.title == "Weekend Reading"
    assert s.newsletter.send_at == "saturday 08:00"


def test_file_then_env_override(workdir: Path) -> None:
    (workdir / "digest.toml").write_text('[feeds]\ntimeout = "5s"\nper_host = 4\n')
    s = load_settings(env={"DIGEST_FEEDS_PER_HOST": "7"})
    assert s.feeds.timeout == timedelta(seconds=5)
    assert s.feeds.per_host == 7


def test_every_setting_has_an_env_name() -> None:
    names = {info.env for info in declared()}
    for name in (
        "DIGEST_DATABASE_URL",
        "DIGEST_FEEDS_OPML",
        "DIGEST_FEEDS_TIMEOUT",
        "DIGEST_NEWSLETTER_FROM",
        "DIGEST_SMTP_PASSWORD_FILE",
        "DIGEST_WEB_ENABLED",
    ):
        assert name in names


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DIGEST_FEEDS_TIMEOUT": "soon"}, "feeds.timeout"),
        ({"DIGEST_FEEDS_CONCURRENCY": "0"}, "feeds.concurrency"),
        ({"DIGEST_NEWSLETTER_TIMEZONE": "Mars/Base"}, "newsletter.timezone"),
        ({"DIGEST_NEWSLETTER_SEND_AT": "someday"}, "newsletter.send_at"),
        ({"DIGEST_SMTP_SECURITY": "ssl3"}, "smtp.security"),
        ({"DIGEST_DATABASE_URL": "mysql://x"}, "database.url"),
    ],
)
def test_bad_values_name_the_key(workdir: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_unknown_key_and_bad_toml(workdir: Path) -> None:
    (workdir / "a.toml").write_text("[feeds]\ntimeut = 3\n")
    with pytest.raises(ConfigError, match="unknown setting feeds.timeut"):
        load_settings("a.toml", env={})
    (workdir / "b.toml").write_text("[feeds\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings("b.toml", env={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings("missing.toml", env={})


def test_parsers() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("10s") == timedelta(seconds=10)
    assert parse_send_at("Sat 8:00") == "saturday 08:00"
    assert parse_send_at("cron: 0 8 * * sat") == "cron: 0 8 * * sat"


def test_secrets_masked(workdir: Path) -> None:
    s = load_settings(env={"DIGEST_SMTP_PASSWORD": "hunter2"})
    assert effective(s)["smtp"]["password"] == "********"


def test_config_command(workdir: Path) -> None:
    result = run_cli(["config", "--json"], env={"DIGEST_SMTP_PASSWORD": "hunter2"})
    assert result.exit_code == 0
    assert "hunter2" not in result.output
    assert '"per_host"' in result.output


def test_config_command_bad_value_is_one_line(workdir: Path) -> None:
    from click.testing import CliRunner

    from digest.cli import cli

    result = CliRunner().invoke(cli, ["config"], env={"DIGEST_FEEDS_TIMEOUT": "x"})
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "feeds.timeout" in result.output


def test_the_readme_lists_every_setting() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    missing = [i.dotted for i in declared() if f"| `{i.dotted}` | `{i.env}` |" not in readme]
    assert missing == []


def test_the_database_password_is_never_shown(workdir: Path) -> None:
    env = {"DIGEST_DATABASE_URL": "postgresql://digest:s3cret@127.0.0.1:1/digest"}
    shown = run_cli(["config"], env=env)
    assert 'url = "postgresql+psycopg://digest:***@127.0.0.1:1/digest"' in shown.stdout
    assert "s3cret" not in shown.stdout + run_cli(["config", "--json"], env=env).stdout
    unreachable = run_cli(["feeds"], env=env)  # nothing listens on port 1
    assert unreachable.exit_code == 1 and "s3cret" not in unreachable.output
    assert unreachable.stderr.count("\n") == 1
    bad = run_cli(["feeds"], env={"DIGEST_DATABASE_URL": "mysql://digest:s3cret@db/digest"})
    assert bad.exit_code == 1 and "s3cret" not in bad.output
    assert "database.url: bad value 'mysql://digest:***@db/digest'" in bad.stderr


def test_a_new_sqlite_database_is_readable_by_its_owner_only(workdir: Path) -> None:
    from digest.storage import Database

    db = Database(f"sqlite:///{workdir / 'digest.db'}")
    db.set_meta("x", "y")  # a write: the -wal and -shm files exist while connections are open
    try:
        for name in ("digest.db", "digest.db-wal", "digest.db-shm"):
            assert (workdir / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        db.dispose()


def test_the_secret_key_can_come_from_a_file(workdir: Path, sqlite_url: str) -> None:
    from digest.delivery.subscribers import secret
    from digest.storage import Database

    (workdir / "key").write_text("a-key-kept-elsewhere\n")
    settings = load_settings(env={"DIGEST_NEWSLETTER_SECRET_KEY_FILE": str(workdir / "key")})
    db = Database(sqlite_url)
    assert secret(db, settings) == "a-key-kept-elsewhere"
    assert db.get_meta("secret_key") is None  # nothing generated, nothing stored
    (workdir / "key").write_text("")
    with pytest.raises(ConfigError, match="newsletter.secret_key_file: .* is empty"):
        secret(db, settings)
    db.dispose()


def test_a_huge_duration_is_one_clear_line(workdir: Path) -> None:
    (workdir / "digest.toml").write_text('[feeds]\npoll_interval = "99999999999d"\n')
    result = run_cli(["config"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: feeds.poll_interval: bad value '99999999999d' (feeds.poll_interval in "
        "digest.toml): must be at most 3650d\n"
    )
    with pytest.raises(ConfigError, match="must be at most 3650d"):
        load_settings(env={"DIGEST_NEWSLETTER_SEND_GRACE": "1e999s"})


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a@b.example, evil@x.example", "expected exactly one address, not 2"),
        ("Weekend Reading", "expected an address such as"),
    ],
)
def test_from_is_exactly_one_address(workdir: Path, value: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"newsletter.from: .*{why}"):
        load_settings(env={"DIGEST_NEWSLETTER_FROM": value})
    quoted = load_settings(env={"DIGEST_NEWSLETTER_FROM": '"Doe, Jane" <jane@x.example>'})
    assert quoted.newsletter.from_addr == '"Doe, Jane" <jane@x.example>'


def test_a_misspelt_variable_gets_a_warning_naming_the_setting(workdir: Path) -> None:
    result = run_cli(["config", "--json"], env={"DIGEST_FEEDS_TIMEOT": "5s"})
    assert result.exit_code == 0
    assert (
        "environment variable DIGEST_FEEDS_TIMEOT names no setting; "
        "did you mean DIGEST_FEEDS_TIMEOUT?"
    ) in result.stderr
    quiet = run_cli(["config", "--json"], env={"DIGEST_FEEDS_TIMEOUT": "5s"})
    assert "names no setting" not in quiet.stderr


def test_digest_config_prints_toml_that_config_reads_back(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGEST_FEEDS_ALLOW_NETWORKS")  # the tests' own opening of loopback
    env = {
        "DIGEST_FEEDS_POLL_INTERVAL": "30m",
        "DIGEST_FEEDS_ALLOW_NETWORKS": "10.0.0.0/8, 192.168.1.0/24",
        "DIGEST_NEWSLETTER_SECRET_KEY": "kept-out-of-the-file",
        "DIGEST_SMTP_RATE": "2.5",
    }
    printed = run_cli(["config"], env=env)
    assert printed.exit_code == 0
    (workdir / "x.toml").write_text(printed.stdout)
    again = load_settings("x.toml", env={})
    expected = load_settings(env={**env, "DIGEST_NEWSLETTER_SECRET_KEY": ""})
    assert again == expected  # the secret stays out: commented, never a mask as a value
    assert '# secret_key = "********"  (set, but not shown)' in printed.stdout
    assert "# password_file =" in printed.stdout  # unset: commented, with its help above
    reread = run_cli(["--config", "x.toml", "config"], env={})
    unset = printed.stdout.replace(
        '# secret_key = "********"  (set, but not shown)', "# secret_key ="
    )
    assert reread.exit_code == 0 and reread.stdout == unset


@pytest.mark.parametrize(
    "url", ["postgres://u:p@db.example:5432/d", "postgresql://u:p@db.example:5432/d"]
)
def test_the_urls_hosting_providers_hand_out_are_taken(url: str) -> None:
    settings = load_settings(env={"DIGEST_DATABASE_URL": url})
    assert settings.database.url == "postgresql+psycopg://u:p@db.example:5432/d"


def test_a_password_in_the_database_urls_query_is_never_shown(workdir: Path) -> None:
    """Issue 23: `?password=` (libpq reads it there too) was printed by `config` and errors."""
    url = "postgresql://digest@127.0.0.1:1/digest?sslmode=disable&password=s3cret"
    env = {"DIGEST_DATABASE_URL": url}
    shown = run_cli(["config"], env=env)
    assert "url = " + '"postgresql+psycopg://digest@127.0.0.1:1/digest?sslmode=disable&' in (
        shown.stdout
    )
    assert "password=***" in shown.stdout
    as_json = run_cli(["config", "--json"], env=env)
    backup = run_cli(["backup", "-o", "x.db"], env=env)  # quotes database.url in its refusal
    unreachable = run_cli(["poll"], env=env)  # nothing listens on port 1
    for result in (shown, as_json, backup, unreachable):
        assert "s3cret" not in result.output, result.output
    assert backup.exit_code == 1 and "password=***" in backup.stderr
    assert unreachable.exit_code == 1 and unreachable.stderr.count("\n") == 1


def test_a_malformed_from_is_refused_in_one_line(workdir: Path) -> None:
    """Issue 23: `Me <a@x.org>, <>` was accepted and sent."""
    for value in ("Me <a@x.org>, <>", "Me <a@x.org>,", "Me <a@x.org> junk", "<>"):
        result = run_cli(["config"], env={"DIGEST_NEWSLETTER_FROM": value})
        assert result.exit_code == 1, value
        assert result.stderr.startswith("Error: newsletter.from: bad value"), result.stderr
        assert result.stderr.count("\n") == 1
    fine = run_cli(["config"], env={"DIGEST_NEWSLETTER_FROM": "Me <a@x.org>"})
    assert fine.exit_code == 0


def test_a_utf16_config_file_is_one_clear_line(workdir: Path) -> None:
    """Issue 23: a UTF-16 file gave a UnicodeDecodeError traceback."""
    (workdir / "digest.toml").write_text('[feeds]\nopml = "x.opml"\n', encoding="utf-16")
    result = run_cli(["config"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: config file digest.toml is not UTF-8 text (it is UTF-16: save it as UTF-8)\n"
    )
    (workdir / "digest.toml").write_text('\ufeff[feeds]\nopml = "x.opml"\n')  # a BOM is fine
    assert load_settings().feeds.opml.name == "x.opml"


@pytest.mark.parametrize(
    "nested",
    ["a = " + "[" * 100_000 + "]" * 100_000, "a = " + "{b = " * 100_000 + "1" + "}" * 100_000],
)
def test_a_deeply_nested_config_file_is_one_clear_line(workdir: Path, nested: str) -> None:
    """Issue 23: 100,000 nested arrays (or tables) gave a RecursionError traceback."""
    (workdir / "digest.toml").write_text(nested + "\n")
    result = run_cli(["config"])
    assert result.exit_code == 1
    assert result.stderr == "Error: config file digest.toml is nested too deeply to be a config\n"
