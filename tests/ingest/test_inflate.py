"""Decompression with a bound: decoded bytes are counted as they are produced."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import brotli
import pytest

from digest.ingest.inflate import CHUNK, BodyError, BoundedBody

BOMBS = Path(__file__).parents[1] / "data" / "bombs"
TEXT = b"<rss><channel><title>T</title></channel></rss>\n" * 2000


def decode(encoding: str | None, raw: bytes, limit: int = 10**6, piece: int = 1000) -> bytes:
    body = BoundedBody(encoding, limit)
    for k in range(0, len(raw), piece):
        body.feed(raw[k : k + piece])
    return body.result()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        (None, lambda b: b),
        ("identity", lambda b: b),
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # as RFC 9110 says: zlib-wrapped
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw, as some servers send it
        ("br", brotli.compress),
        ("BR", brotli.compress),
        ("identity, gzip", gzip.compress),
    ],
)
def test_every_encoding_decodes_in_pieces(encoding: str | None, encode) -> None:  # type: ignore[no-untyped-def]
    assert decode(encoding, encode(TEXT)) == TEXT


def test_several_gzip_members_are_one_body() -> None:
    assert decode("gzip", gzip.compress(TEXT) + gzip.compress(TEXT)) == TEXT + TEXT


@pytest.mark.parametrize(
    ("name", "encoding"), [("zeros-2gib.br", "br"), ("zeros-4gib.gz.gz", "gzip")]
)
def test_a_bomb_stops_at_the_limit_holding_one_buffer_more_at_most(
    name: str, encoding: str
) -> None:
    # One layer of the gzip-in-gzip bomb is 4 MB of gzip: past a 1 MB limit all the same.
    body = BoundedBody(encoding, 1_000_000)
    with pytest.raises(BodyError, match="larger than 1000000 bytes once decompressed"):
        body.feed((BOMBS / name).read_bytes())
    # One decoder buffer more at most: brotli's grows to 96 KB when asked for 64 KB.
    assert body.size <= 1_000_000 + 2 * CHUNK


def test_stacked_encodings_are_refused() -> None:
    with pytest.raises(BodyError, match="stacked content encodings refused: gzip, gzip"):
        BoundedBody("gzip, gzip", 10**6)


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(BodyError, match="unsupported content encoding: zstd"):
        BoundedBody("zstd", 10**6)


def test_the_wire_is_counted_too() -> None:
    with pytest.raises(BodyError, match="body larger than 1000 bytes"):
        decode(None, b"x" * 1001, limit=1000)


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
def test_corrupt_or_cut_bodies_are_readable_errors(encoding: str) -> None:
    with pytest.raises(BodyError, match=f"cannot decode the {encoding} body|cut short"):
        decode(encoding, b"this is not compressed at all")
    whole = {"gzip": gzip.compress, "br": brotli.compress, "deflate": zlib.compress}[encoding]
    with pytest.raises(BodyError, match="cut short"):
        decode(encoding, whole(TEXT)[:-10] if encoding != "br" else whole(TEXT)[:20])
