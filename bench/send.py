"""Time `send_issue` delivering one full issue to 10,000 subscribers through a local aiosmtpd.

    .venv/bin/python bench/send.py [--messages 10000] [--blogs 300] [--posts 20]
                                   [--database-url URL] [--dkim]

Builds a database in a temporary folder (posts written directly: the issue fills the 90 KB
budget by default), imports the subscribers (70% all sections, 20% ML only, 10% Systems only:
three renderings), and runs aiosmtpd in its own process, counting messages without keeping
them. Then times send_issue end to end: recording the issue, rendering, and one message per
subscriber with the delivery log written before and after each. Prints messages/s, the total,
and the CPU each side used.

aiosmtpd reads DATA line by line in Python (a few microseconds a line, and each line read
moves the rest of its buffer), so the server's CPU grows with the line count: digest sends
8bit bodies folded at 850 bytes (the text part keeps its 78-column lines) and uses
smtp.connections (2) connections so the server works on one message while the next is
prepared. `--sink bulk` swaps in aiosmtpd with a DATA reader that takes the message in large
reads (everything else stock), to show what the sender does against a server that keeps up.
`--dkim` signs every message with a 2048-bit RSA key made for the run (smtp.dkim_*), as a
sender that follows Gmail's and Yahoo's rules does; the last line gives the sender's CPU per
message, the figure to compare.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from busy_week import END  # noqa: E402


def sink(bulk: bool) -> None:
    """Child process: aiosmtpd that counts messages; prints its port, then on 'stop' its
    count, bytes and CPU seconds."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    class BulkData(SMTP):
        async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
            if self.envelope is None or not self.envelope.rcpt_tos:
                await self.push("503 Error: need RCPT command")
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            data = bytearray()
            while not data.endswith(b"\r\n.\r\n"):
                chunk = await self._reader.read(1 << 18)
                if not chunk:
                    return
                data += chunk
            self.envelope.original_content = bytes(data[:-3])  # counted, not un-dot-stuffed
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push(status)

    class Counter:
        count = 0
        size = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            Counter.count += 1
            Counter.size = len(envelope.original_content or b"")
            return "250 OK"

    class PortZero(Controller):
        def factory(self) -> SMTP:
            return (BulkData if bulk else SMTP)(self.handler, **self.SMTP_kwargs)

        def _trigger_server(self) -> None:  # aiosmtpd's readiness probe dials self.port
            self.port = self.server.sockets[0].getsockname()[1]
            super()._trigger_server()

    controller = PortZero(Counter(), hostname="127.0.0.1", port=0)
    controller.start()
    print(controller.port, flush=True)
    sys.stdin.readline()
    print(Counter.count, Counter.size, round(time.process_time(), 2), flush=True)
    controller.stop()


def fill(url: str, blogs: int, posts: int, subscribers: int) -> None:
    from busy_week import fill_week

    from digest.delivery.importing import import_subscribers
    from digest.storage import Database

    db = Database(url)
    fill_week(db, blogs, posts)
    rows = ["email,sections"]
    for i in range(subscribers):
        sections = "ml" if i % 10 in (1, 2) else "systems" if i % 10 == 3 else ""
        rows.append(f"reader{i:05d}@example.com,{sections}")
    summary = import_subscribers(db, "\n".join(rows) + "\n")
    assert summary.added == subscribers, summary.line()
    db.dispose()


def dkim_settings(folder: Path) -> dict[str, Any]:
    """smtp.dkim_* with a new 2048-bit RSA key (PEM) in ``folder``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {"dkim_selector": "bench", "dkim_domain": "example.org", "dkim_key_file": path}


class DkimpySigner:
    """The signing before issue 23: dkimpy's own, RSA in pure Python (the same h= list as
    DkimSigner, so only the RSA differs)."""

    def __init__(self, domain: str, selector: str, key_pem: bytes) -> None:
        self.domain, self.selector, self.key = domain.encode(), selector.encode(), key_pem

    def sign(self, raw: bytes) -> bytes:
        import dkim

        from digest.delivery.dkimsign import signed_headers

        include = signed_headers(dkim.rfc822_parse(raw)[0])
        signature: bytes = dkim.sign(
            raw, self.selector, self.domain, self.key, include_headers=include
        )
        return signature + raw


@dataclass
class Measured:
    sent: int
    seconds: float
    cpu: float


def run(args: argparse.Namespace, signer: str) -> Measured:
    """One database, one sink, one send; prints its lines."""
    from digest.config import Settings
    from digest.delivery import mail
    from digest.delivery.send import send_issue
    from digest.storage import Database

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        started = time.perf_counter()
        fill(url, args.blogs, args.posts, args.messages)
        took = time.perf_counter() - started
        print(f"database ready in {took:.1f}s ({args.blogs} blogs x {args.posts} posts, "
              f"{args.messages} subscribers)")  # fmt: skip
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--sink", args.sink],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdin is not None and server.stdout is not None
        port = int(server.stdout.readline())
        settings = Settings().replace(
            database={"url": url},
            smtp={"host": "127.0.0.1", "port": port},
            newsletter={"from_addr": "Weekend Reading <news@example.org>",
                        "base_url": "https://digest.example.org"},
        )  # fmt: skip
        if args.dkim:
            settings = settings.replace(smtp=dkim_settings(Path(tmp)))
        openssl_signer = mail.dkim_signer
        if signer == "dkimpy":
            key = Path(tmp, "dkim.pem").read_bytes()
            mail.dkim_signer = lambda _s: DkimpySigner("example.org", "bench", key)  # type: ignore[assignment,return-value]
        db = Database(url)
        cpu = time.process_time()
        started = time.perf_counter()
        try:
            summary = send_issue(db, settings, as_of=END)
        finally:
            mail.dkim_signer = openssl_signer
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        server.stdin.write("stop\n")
        server.stdin.flush()
        count, size, sink_cpu = server.stdout.readline().split()
        server.wait(10)
        db.dispose()
    print(summary.line())
    print(f"server received {count} messages, the last {int(size) / 1000:.0f} KB")
    print(f"{summary.sent / seconds:.0f} messages/s, {seconds:.1f}s in total "
          f"(sender CPU {cpu:.1f}s, aiosmtpd ({args.sink} DATA) CPU {float(sink_cpu):.1f}s); "
          f"target: {args.messages} in under 60s")  # fmt: skip
    signed = f"DKIM-signed by {signer}" if args.dkim else "unsigned"
    print(f"sender CPU per message ({signed}): {cpu / max(summary.sent, 1) * 1000:.2f} ms")
    if int(count) != args.messages or summary.sent != args.messages:
        sys.exit(f"expected {args.messages} messages")
    return Measured(summary.sent, seconds, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--blogs", type=int, default=300)
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    parser.add_argument(
        "--sink", choices=["stock", "bulk"], default="stock", help="aiosmtpd's DATA reader"
    )
    parser.add_argument("--dkim", action="store_true", help="sign with a 2048-bit RSA key")
    parser.add_argument(
        "--dkimpy",
        action="store_true",
        help="with --dkim: first the same send signed by dkimpy's pure-Python RSA (before "
        "issue 23), then OpenSSL's; prints the ratio",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        sink(bulk=args.sink == "bulk")
        return
    if not (args.dkim and args.dkimpy):
        run(args, "openssl")
        return
    before = run(args, "dkimpy")
    after = run(args, "openssl")
    per_before, per_after = before.cpu / before.sent, after.cpu / after.sent
    print(
        f"DKIM, before (dkimpy) -> after (OpenSSL via cryptography): "
        f"{before.sent / before.seconds:.0f} -> {after.sent / after.seconds:.0f} messages/s, "
        f"CPU per message {per_before * 1000:.2f} -> {per_after * 1000:.2f} ms "
        f"({per_before / per_after:.1f} x less)"
    )


if __name__ == "__main__":
    main()
