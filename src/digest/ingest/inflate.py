"""Response bodies decoded with a bound: the decoded bytes are counted as they are produced,
so a compression bomb costs at most ``limit`` bytes (and one buffer), whatever its encoding.

httpx decodes a whole network chunk at once: a 1.6 KB brotli body became 2.1 GB in one call,
before any cap could count it. Here every decoder call is told how much it may produce.
One Content-Encoding layer at most: a stacked one ("gzip, gzip") is refused.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli

# Decoded bytes asked of each decoder call: what a body may hold beyond its cap (brotli's
# buffer grows in steps: 96 KB when asked for 64 KB).
CHUNK = 64 * 1024
IDENTITY = ("", "identity")


class BodyError(Exception):
    """The body can't be read within the rules: too big, stacked or unknown encoding, corrupt."""


class _Decoder(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]: ...
    def finish(self) -> Iterator[bytes]: ...


class BoundedBody:
    """Collects a body's decoded bytes, refusing to hold more than ``limit``."""

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.raw_size = 0
        self.parts: list[bytes] = []
        self.decoder = decoder_for(content_encoding)

    def feed(self, raw: bytes) -> None:
        """Take the next bytes off the wire; BodyError once the body passes the limit."""
        self.raw_size += len(raw)
        if self.raw_size > self.limit:
            raise BodyError(f"body larger than {self.limit} bytes")
        self._keep(self.decoder.decode(raw))

    def result(self) -> bytes:
        """The whole decoded body, once the wire has nothing more."""
        self._keep(self.decoder.finish())
        return b"".join(self.parts)

    def _keep(self, chunks: Iterator[bytes]) -> None:
        for chunk in chunks:
            self.size += len(chunk)
            if self.size > self.limit:
                raise BodyError(f"body larger than {self.limit} bytes once decompressed")
            self.parts.append(chunk)


def decoder_for(content_encoding: str | None) -> _Decoder:
    """The decoder of a Content-Encoding header: identity, gzip, deflate or br, one layer."""
    layers = [e.strip().lower() for e in (content_encoding or "").split(",")]
    layers = [e for e in layers if e not in IDENTITY]
    if len(layers) > 1:
        raise BodyError(f"stacked content encodings refused: {content_encoding}")
    if not layers:
        return _Identity()
    encoding = layers[0]
    if encoding in ("gzip", "x-gzip"):
        return _Zlib(zlib.MAX_WBITS | 16, encoding)
    if encoding == "deflate":
        return _Deflate()
    if encoding == "br":
        return _Brotli()
    raise BodyError(f"unsupported content encoding: {encoding}")


class _Identity:
    def decode(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data

    def finish(self) -> Iterator[bytes]:
        return iter(())


class _Zlib:
    """gzip (several members too) or zlib-wrapped deflate, at most CHUNK bytes per call."""

    def __init__(self, wbits: int, name: str) -> None:
        self.wbits, self.name = wbits, name
        self.inflater = zlib.decompressobj(wbits)

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            while True:
                out = self.inflater.decompress(data, CHUNK)
                if out:
                    yield out
                data = self.inflater.unconsumed_tail
                if self.inflater.eof and self.inflater.unused_data:
                    # Another gzip member follows (RFC 1952 allows several).
                    data = self.inflater.unused_data
                    self.inflater = zlib.decompressobj(self.wbits)
                    continue
                if not out and not data:
                    return
        except zlib.error as e:
            raise BodyError(f"cannot decode the {self.name} body: {e}") from None

    def finish(self) -> Iterator[bytes]:
        yield from self.decode(b"")
        if not self.inflater.eof:
            raise BodyError(f"the {self.name} body is cut short")


class _Deflate:
    """``deflate`` is zlib-wrapped by the RFC, raw in the wild: the first bytes tell which."""

    def __init__(self) -> None:
        self.inner: _Zlib | None = None
        self.head = b""

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self.inner is None:
            self.head += data
            if len(self.head) < 2:
                return
            wrapped = (self.head[0] & 0x0F) == 8 and int.from_bytes(self.head[:2]) % 31 == 0
            self.inner = _Zlib(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS, "deflate")
            data, self.head = self.head, b""
        yield from self.inner.decode(data)

    def finish(self) -> Iterator[bytes]:
        if self.inner is None:
            if self.head:
                raise BodyError("the deflate body is cut short")
            return
        yield from self.inner.finish()


class _Brotli:
    def __init__(self) -> None:
        self.decompressor = brotli.Decompressor()

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            out = self.decompressor.process(data, output_buffer_limit=CHUNK)
            while True:
                if out:
                    yield out
                if self.decompressor.can_accept_more_data():
                    return
                out = self.decompressor.process(b"", output_buffer_limit=CHUNK)
        except brotli.error as e:
            raise BodyError(f"cannot decode the br body: {e}") from None

    def finish(self) -> Iterator[bytes]:
        if not self.decompressor.is_finished():
            raise BodyError("the br body is cut short")
        return iter(())
