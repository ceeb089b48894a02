"""Subscribers: validation, header injection refused, sections, import, tokens, status."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest

from digest.delivery import importing
from digest.delivery.consent import forget
from digest.delivery.importing import import_subscribers
from digest.delivery.subscribers import (
    add_subscriber,
    count_by_status,
    list_subscribers,
    parse_address,
    parse_sections,
    remove_subscriber,
    subscriber_for_token,
    unsubscribe,
)
from digest.delivery.tokens import make_token
from digest.errors import InputError
from digest.storage import Database

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_addresses_are_normalised() -> None:
    assert parse_address("  Reader@Example.COM ") == ("reader@example.com", None)
    assert parse_address("Jane Doe <jane@example.com>") == ("jane@example.com", "Jane Doe")
    assert parse_address("joe@exämple.com")[0] == "joe@xn--exmple-cua.com"


@pytest.mark.parametrize(
    "text",
    [
        "a@b.example\r\nBcc: x@y.example",
        "a@b.example\nBcc: x@y.example",
        "a@b.example\rBcc: x@y.example",
        "a@b.example\u2028Bcc: x@y.example",
    ],
)
def test_line_breaks_are_refused_as_injection(text: str) -> None:
    with pytest.raises(InputError, match="line break"):
        parse_address(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a@example.com, b@example.com", "several addresses"),
        ("a@example.com b@example.com", "several addresses"),
        ("a@example.com;b@example.com", "several addresses"),
        ("a@b\x00.example", "control characters"),
        ("not an address", "not a valid email address"),
        ("a@localhost", "not a valid email address"),
        ("", "empty"),
    ],
)
def test_bad_addresses_say_why(text: str, why: str) -> None:
    with pytest.raises(InputError, match=why):
        parse_address(text)


def test_sections() -> None:
    assert parse_sections("ml") == "ml"
    assert parse_sections("systems, ML") == "ml,systems"
    assert parse_sections("all") is None
    assert parse_sections("ml,systems,other") is None
    with pytest.raises(InputError, match="unknown section 'sport'"):
        parse_sections("ml,sport")


def test_add_list_remove(db: Database) -> None:
    info, outcome = add_subscriber(db, "Reader@Example.com", name="Ree", sections="ml", now=NOW)
    assert outcome == "added"
    assert (info.email, info.name, info.status, info.sections) == (
        "reader@example.com",
        "Ree",
        "active",
        ("ml",),
    )
    again, outcome = add_subscriber(db, "reader@EXAMPLE.com")
    assert (outcome, again.id, again.sections) == ("updated", info.id, ("ml",))
    add_subscriber(db, "other@example.com")
    assert [s.email for s in list_subscribers(db)] == ["other@example.com", "reader@example.com"]
    assert list_subscribers(db)[0].as_json()["sections"] == "all"
    assert remove_subscriber(db, "READER@example.com").id == info.id
    assert [s.email for s in list_subscribers(db)] == ["other@example.com"]
    with pytest.raises(InputError, match="no subscriber"):
        remove_subscriber(db, "reader@example.com")


def test_add_refuses_injection_and_stores_nothing(db: Database) -> None:
    with pytest.raises(InputError, match="line break"):
        add_subscriber(db, "a@b.example\r\nBcc: x@y.example")
    with pytest.raises(InputError, match="line break"):
        add_subscriber(db, "a@b.example", name="Eve\r\nBcc: x@y.example")
    assert list_subscribers(db) == []


def test_unsubscribe_records_when_and_add_resubscribes(db: Database) -> None:
    info, _ = add_subscriber(db, "reader@example.com")
    assert unsubscribe(db, info.id, now=NOW)
    assert not unsubscribe(db, info.id, now=NOW)
    (row,) = list_subscribers(db)
    assert row.status == "unsubscribed"
    assert row.unsubscribed_at == NOW
    assert count_by_status(db) == {
        "pending": 0,
        "active": 0,
        "unsubscribed": 1,
        "bounced": 0,
        "complained": 0,
    }
    _, outcome = add_subscriber(db, "reader@example.com")
    assert outcome == "resubscribed"
    assert list_subscribers(db)[0].unsubscribed_at is None


def test_import_plain_lines(db: Database) -> None:
    add_subscriber(db, "old@example.com")
    text = (
        "# my list\r\n"
        "one@example.com\r\n"
        "\r\n"
        "Two <two@example.com>\r\n"
        "ONE@example.com\r\n"
        "old@example.com\r\n"
        "bad@@example.com\r\n"
        "a@b.example\rBcc: x@y.example\r\n"
        "c@example.com, d@example.com\n"
    )
    summary = import_subscribers(db, text, now=NOW)
    assert (summary.added, summary.skipped) == (2, 2)
    assert [n for n, _t, _why in summary.invalid] == [7, 8, 9]
    assert "line break (it could inject headers)" in summary.invalid[1][2]
    assert "several addresses" in summary.invalid[2][2]
    assert summary.line() == "2 added, 2 skipped, 3 invalid"
    names = {s.email: s.name for s in list_subscribers(db)}
    assert names == {"old@example.com": None, "one@example.com": None, "two@example.com": "Two"}


def test_a_csv_without_its_header_row_says_so(db: Database) -> None:
    """A new user's first list: rows of address and name, no header. Each row says what is
    missing, not that a comma is an invalid character; plain lines around them still count."""
    text = "ada@example.com,Ada\nlinus@example.com,Linus\nplain@example.com\n"
    summary = import_subscribers(db, text, now=NOW)
    assert (summary.added, [n for n, _t, _why in summary.invalid]) == (1, [1, 2])
    for _n, row, why in summary.invalid:
        assert row.endswith((",Ada", ",Linus"))
        assert why == (
            f"{row!r}: a CSV row, but the file's first line names no email column: a CSV "
            "starts with a header row, e.g. `email,name`"
        )


def test_import_csv_with_header(db: Database) -> None:
    text = (
        "Name,E-mail,Sections\n"
        "Ann,ann@example.com,ml\n"
        'Bob,"bob@example.com\r\nBcc: x@y.example",\n'
        "Cy,cy@example.com,\n"
        "Di,di@example.com,cooking\n"
    )
    summary = import_subscribers(db, text, sections="systems")
    assert (summary.added, summary.skipped) == (2, 0)
    # One record per line (no field of ours holds a line break): Bob's quote never closes on
    # its line, and the injected header on the next line is no row either.
    assert [n for n, _t, _w in summary.invalid] == [3, 4, 6]
    assert "a quote is opened and never closed" in summary.invalid[0][2]
    assert "unknown section" in summary.invalid[2][2]
    rows = {s.email: (s.name, s.sections) for s in list_subscribers(db)}
    assert rows == {"ann@example.com": ("Ann", ("ml",)), "cy@example.com": ("Cy", ("systems",))}
    assert summary.as_json()["invalid"][0]["line"] == 3


def test_import_never_resubscribes(db: Database) -> None:
    info, _ = add_subscriber(db, "gone@example.com")
    unsubscribe(db, info.id)
    summary = import_subscribers(db, "gone@example.com\n")
    assert summary.skipped == 1
    assert list_subscribers(db)[0].status == "unsubscribed"


def test_token_lookup(db: Database) -> None:
    info, _ = add_subscriber(db, "reader@example.com")
    token = make_token("key", info.id, info.email)
    found = subscriber_for_token(db, "key", token)
    assert found is not None and found.id == info.id
    assert subscriber_for_token(db, "other key", token) is None
    assert subscriber_for_token(db, "key", "nonsense") is None
    remove_subscriber(db, "reader@example.com")
    assert subscriber_for_token(db, "key", token) is None


def test_a_bad_csv_row_costs_its_own_line_only(db: Database) -> None:
    text = (
        "email,name\n"
        'ann@example.com,"Ann\n'  # the quote is never closed
        "bob@example.com,Bob\n"
        f"cy@example.com,{'x' * 200_000}\n"  # a field past csv's 128 KB limit
        'di@example.com,"Di, the ""quoted"""\n'
        "eve@example.com,Eve\u202e\n"  # a bidi override in a name
        f"fay@example.com,{'F' * 201}\n"
    )
    summary = import_subscribers(db, text)
    assert summary.added == 2
    problems = {n: why for n, _raw, why in summary.invalid}
    assert problems == {
        2: "not a CSV row: a quote is opened and never closed",
        4: "not a CSV row: a field is longer than 131,072 characters",
        6: "a name can't contain invisible format characters (U+202E)",
        7: "a name has at most 200 characters (this one has 201)",
    }
    assert all(len(raw) <= 120 for _n, raw, _why in summary.invalid)
    names = {s.email: s.name for s in list_subscribers(db)}
    assert names == {"bob@example.com": "Bob", "di@example.com": 'Di, the "quoted"'}


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Ada\x07", "control characters"),
        ("Ada\u2066Lovelace", "invisible format characters (U+2066)"),
        ("A" * 5000, "at most 200 characters (this one has 5000)"),
    ],
)
def test_add_refuses_a_name_that_would_fail_later(db: Database, name: str, why: str) -> None:
    with pytest.raises(InputError, match=re.escape(why)):
        add_subscriber(db, "ada@example.com", name=name)
    assert list_subscribers(db) == []


def test_import_streams_in_batches_and_lets_the_database_find_duplicates(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 3: a duplicate two batches later, an address already subscribed and one
    that asked to be forgotten are each found by the database, not by a set of the file."""
    monkeypatch.setattr(importing, "BATCH", 3)
    add_subscriber(db, "old@example.com")
    add_subscriber(db, "gone@example.com")
    forget(db, "gone@example.com", NOW)
    lines = [f"r{i}@example.com" for i in range(10)]
    lines[8] = "R1@example.com"  # r1 twice, batches apart
    lines[4] = "old@example.com"
    lines[6] = "gone@example.com"
    summary = import_subscribers(db, "\n".join(lines) + "\n")
    assert (summary.added, summary.skipped, summary.forgotten) == (7, 2, 1)
    emails = {s.email for s in list_subscribers(db)}
    assert "gone@example.com" not in emails and len(emails) == 8


def test_import_reports_a_capped_list_of_refused_lines(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importing, "INVALID_SHOWN", 2)
    summary = import_subscribers(db, "bad1\nok@example.com\nbad2\nbad3\nbad4\n")
    assert summary.added == 1 and summary.invalid_count == 4 and summary.unshown == 2
    assert [n for n, _t, _w in summary.invalid] == [1, 3]
    assert summary.line() == "1 added, 0 skipped, 4 invalid"
    assert summary.as_json()["invalid_count"] == 4


def test_import_refuses_a_line_that_is_not_utf8_and_goes_on(db: Database) -> None:
    data = b"email,name\nann@example.com,Ann\nbob@example.com,B\xe9b\ncy@example.com,Cy\n"
    summary = import_subscribers(db, io.BytesIO(data))
    assert summary.added == 2
    assert summary.invalid == [(3, "", "not UTF-8 text")]
    with pytest.raises(InputError, match="not UTF-8 text"):
        import_subscribers(db, io.BytesIO("email\nann@example.com\n".encode("utf-16")))


@pytest.mark.parametrize(
    "line",
    ["a@b.example,ml", " a@b.example , ml ,x", ",,", "x", "a@b.example,\t", 'a,"b,c"', "a\rb"],
)
def test_a_row_is_split_as_csv_splits_it(line: str) -> None:
    import csv

    try:
        expected: list[str] | str = next(csv.reader([line], strict=True))
    except csv.Error as e:
        expected = str(e)
    try:
        got: list[str] | str = importing._cells(line)
    except csv.Error as e:
        got = str(e)
    assert got == expected
