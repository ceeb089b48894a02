"""By-hand check of digest's mail against a real MTA: Debian's Postfix on loopback, in a
temporary folder, delivering locally only (nothing is relayed), with a real dovecot for the
bounce mailbox. Run as root (Postfix's master runs as root and drops to the postfix user):

    apt-get install -y postfix dovecot-imapd libmail-dkim-perl   # 'No configuration' for postfix
    .venv/bin/python scripts/postfix_check.py

What it shows, each a line starting "ok" or "FAIL" (exit status 1 on any FAIL):

1. `digest send` through Postfix's smtpd: a DKIM-signed issue is delivered to a local mailbox;
   the delivered copy verifies with dkimpy and Mail::DKIM; with a second List-Unsubscribe (or
   From) prepended it fails in both (over-signing).
2. A recipient Postfix does not know is refused at RCPT with 550 5.1.1: the subscriber is
   bounced at once, by that one send.
3. A recipient whose mail Postfix defers (its domain routed to a loopback port where nothing
   listens): Postfix's own delay warning, then its final DSN (4.4.1), reach the bounce mailbox
   (Postfix delivers them to the VERP address locally); `digest bounces fetch` counts the
   warning as no bounce and the final DSN as one soft bounce; the subscriber stays active.

Not a test in the suite: it starts a Postfix instance (root, ~20 s of Postfix's queue timers).
OpenDKIM's verifier needs DNS or its milter's test key table: not run here (dkimpy and
Mail::DKIM are).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.conftest import free_port  # noqa: E402
from tests.imap_helpers import PASSWORD, Dovecot  # noqa: E402
from tests.test_cli_delivery import week_of_posts  # noqa: E402

ANN, GONE, FULL = "ann@example.com", "gone@example.com", "full@slow.example"
BOUNCES = "bounces@news.example.org"
FAILED: list[str] = []

MASTER = """\
{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {d}/maillog
maillog_file_prefixes = /var, /dev/stdout, {d}
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.news.example.org
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
# Nothing leaves this machine: a domain not listed below is refused.
default_transport = error:5.7.1 this test instance relays nothing
virtual_mailbox_domains = news.example.org example.com
virtual_mailbox_maps = texthash:{d}/mailboxes
virtual_mailbox_base = {d}/mail
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
relay_domains = slow.example
transport_maps = texthash:{d}/transport
recipient_delimiter = +
delay_warning_time = 1s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = 6s
bounce_queue_lifetime = 6s
biff = no
alias_maps =
alias_database =
smtpd_banner = $myhostname ESMTP
"""


def check(ok: bool, what: str, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'}  {what}" + (f": {detail}" if detail and not ok else ""))
    if not ok:
        FAILED.append(what)


def wait(found: Callable[[], object], seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"FAIL  waited {seconds:.0f} s for {what}")


def start_postfix(d: Path, port: int) -> None:
    owner = pwd.getpwnam("nobody")
    conf = d / "etc"
    conf.mkdir()
    (conf / "master.cf").write_text(MASTER.format(port=f"127.0.0.1:{port}"))
    (conf / "main.cf").write_text(MAIN.format(d=d, uid=owner.pw_uid, gid=owner.pw_gid))
    (d / "mailboxes").write_text(f"{ANN} ann/\n{BOUNCES} bounces/\n")
    # A server on loopback that is down (nothing listens there): Postfix defers, then gives up.
    (d / "transport").write_text(f"slow.example smtp:[127.0.0.1]:{free_port()}\n")
    for sub in ("queue", "data", "mail"):
        (d / sub).mkdir()
    shutil.chown(d / "data", "postfix")
    shutil.chown(d / "mail", owner.pw_uid, owner.pw_gid)
    d.chmod(0o755)
    # start-fg: `postfix start` wants syslog (/dev/log), which a container may lack.
    master = subprocess.Popen(
        ["postfix", "-c", str(conf), "start-fg"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait(lambda: _listening(port) or master.poll() is not None, 20, "Postfix's smtpd")
    if not _listening(port):
        raise SystemExit(f"FAIL  postfix did not start: {_log(d)}")


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        return False
    return True


def _log(d: Path) -> str:
    path = d / "maillog"
    return path.read_text()[-2000:] if path.exists() else "(no log)"


def maildir(d: Path, box: str) -> list[bytes]:
    new = d / "mail" / box / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []


def digest(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | env
    return subprocess.run(
        [sys.executable, "-m", "digest", *args], env=full, cwd=cwd, capture_output=True, text=True
    )


def mail_dkim(raw: bytes, public: str) -> str:
    """Mail::DKIM's verdict, the key given in place of DNS."""
    perl = r"""
        use Mail::DKIM::Verifier; use Net::DNS;
        my $txt = shift;
        no warnings 'redefine';
        *Mail::DKIM::DNS::query = sub {
            my ($name, $type) = @_;
            return Net::DNS::RR->new(name => $name, type => 'TXT', txtdata => $txt);
        };
        local $/; my $m = <STDIN>; $m =~ s/\r?\n/\r\n/g;
        my $v = Mail::DKIM::Verifier->new; $v->PRINT($m); $v->CLOSE;
        print $v->result, "\n";
    """
    key = f"v=DKIM1; k=rsa; p={public}"
    done = subprocess.run(["perl", "-e", perl, key], input=raw, capture_output=True)
    return (done.stdout.decode() or done.stderr.decode()).strip()


def dkim_checks(raw: bytes, public: str) -> None:
    import dkim

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return f"v=DKIM1; k=rsa; p={public}".encode()

    check(dkim.verify(raw, dnsfunc=dns), "the delivered issue verifies with dkimpy")
    verdict = mail_dkim(raw, public)
    check(verdict == "pass", "the delivered issue verifies with Mail::DKIM", verdict)
    for added in (b"List-Unsubscribe: <https://evil.example/u>\r\n", b"From: x@bank.example\r\n"):
        name = added.split(b":")[0].decode()
        tampered = added + raw
        check(not dkim.verify(tampered, dnsfunc=dns), f"a prepended {name} fails dkimpy")
        verdict = mail_dkim(tampered, public)
        check(verdict == "fail", f"a prepended {name} fails Mail::DKIM", verdict)


def main() -> None:
    if os.getuid() != 0 or not shutil.which("postfix"):
        raise SystemExit("run as root with Postfix installed (apt-get install postfix)")
    d = Path(tempfile.mkdtemp(prefix="digest-postfix-"))
    port = free_port()
    imap = Dovecot()
    try:
        start_postfix(d, port)
        run(d, port, imap)
    finally:
        subprocess.run(["postfix", "-c", str(d / "etc"), "stop"], capture_output=True)
        imap.close()
        shutil.rmtree(d, ignore_errors=True)
    print("all checks passed" if not FAILED else f"{len(FAILED)} checks FAILED")
    sys.exit(1 if FAILED else 0)


def run(d: Path, port: int, imap: Dovecot) -> None:
    from tests.smtp_helpers import make_dkim_key

    key, public = make_dkim_key(d)
    work = d / "digest"
    work.mkdir()
    url = f"sqlite:///{work / 'digest.db'}"
    env = {
        "DIGEST_DATABASE_URL": url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(port),
        "DIGEST_NEWSLETTER_FROM": "Weekend Reading <news@example.org>",
        "DIGEST_NEWSLETTER_BOUNCE_ADDRESS": BOUNCES,
        "DIGEST_NEWSLETTER_BASE_URL": "https://news.example.org",
        "DIGEST_SMTP_DKIM_SELECTOR": "s1",
        "DIGEST_SMTP_DKIM_DOMAIN": "example.org",
        "DIGEST_SMTP_DKIM_KEY_FILE": str(key),
        "DIGEST_BOUNCES_IMAP_URL": imap.url(),
        "DIGEST_BOUNCES_PASSWORD": PASSWORD,
        "DIGEST_BOUNCES_CA_FILE": str(imap.cert),
    }
    for email in (ANN, GONE, FULL):
        assert digest(["subscribers", "add", email], env, work).returncode == 0
    week_of_posts(url)
    sent = digest(["send", "--as-of", "2026-01-10T08:00Z"], env, work)
    print(f"      digest send: {sent.stdout.strip()}")
    print(f"      its log: {sent.stderr.strip()}")
    check(sent.returncode == 0, "digest send completes (every message handed over)", sent.stderr)
    check(f"now bounced: {GONE}" in sent.stdout, "550 5.1.1 at RCPT bounces the reader at once")
    check("550 5.1.1" in sent.stderr, "the refusal is Postfix's own 550 5.1.1", sent.stderr)

    delivered = wait(lambda: maildir(d, "ann"), 20, "the issue in ann's mailbox")
    assert isinstance(delivered, list)
    dkim_checks(delivered[0], public)

    def postfix_dsns() -> list[bytes]:
        found = maildir(d, "bounces")
        return found if len(found) >= 2 else []

    dsns = wait(postfix_dsns, 40, "Postfix's delay warning and final DSN for full@slow.example")
    assert isinstance(dsns, list)
    subjects = [str(message_from_bytes(m)["Subject"]) for m in dsns]
    print(f"      Postfix sent back: {subjects}")
    delay = [m for m, s in zip(dsns, subjects, strict=True) if "Delayed" in s]
    final = [m for m, s in zip(dsns, subjects, strict=True) if "Undelivered" in s]
    check(len(delay) == 1 and len(final) == 1, "Postfix wrote one delay warning, one final DSN")
    imap.append(*delay)
    fetched = json.loads(digest(["bounces", "fetch", "--json"], env, work).stdout)
    print(f"      bounces fetch (the delay warning): {fetched}")
    check(fetched["ignored"] == 1 and fetched["soft"] == 0, "a delay warning is no bounce")
    imap.append(*final)
    fetched = json.loads(digest(["bounces", "fetch", "--json"], env, work).stdout)
    print(f"      bounces fetch (the final DSN): {fetched}")
    check(fetched["soft"] == 1, "the final DSN (4.4.1, given up) is one soft bounce")
    listed = json.loads(digest(["subscribers", "list", "--json"], env, work).stdout)
    statuses = {s["email"]: s["status"] for s in listed}
    print(f"      subscribers: {statuses}")
    check(statuses == {ANN: "active", GONE: "bounced", FULL: "active"}, "statuses as expected")
    events = json.loads(digest(["bounces", "list", "--json"], env, work).stdout)
    soft = [e for e in events if e["email"] == FULL]
    check(len(soft) == 1, "delay warning + final DSN count once, not twice", str(soft))


if __name__ == "__main__":
    main()
