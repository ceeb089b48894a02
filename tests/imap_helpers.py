"""A real IMAP server for tests: Debian's dovecot, on free loopback ports, with a throwaway
config (a passwd-file user, maildir in a temporary folder, TLS with a test certificate).

It runs as the user running the tests, or, for root (CI), as ``nobody`` (dovecot will not run
mail processes as root). Without dovecot (`apt-get install dovecot-imapd`) the tests that need
it skip, saying so.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for
from tests.smtp_helpers import make_cert

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "s3cret-imap"


def need_dovecot() -> None:
    if not Path(DOVECOT).exists():
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd): IMAP tests skipped")


class Dovecot:
    """One dovecot process with an IMAP listener (plain, STARTTLS when ``tls``) and an IMAPS one."""

    def __init__(self, *, tls: bool = True) -> None:
        need_dovecot()
        self.tls = tls
        self.dir = Path(tempfile.mkdtemp(prefix="digest-dovecot-"))
        runner = pwd.getpwuid(os.getuid()) if os.getuid() != 0 else pwd.getpwnam("nobody")
        self.cert, key = make_cert(self.dir)
        self.port, self.tls_port = free_port(), free_port()
        self._write_config(runner, key)
        if os.getuid() == 0:
            shutil.chown(self.dir, runner.pw_uid, runner.pw_gid)
            for path in self.dir.iterdir():
                shutil.chown(path, runner.pw_uid, runner.pw_gid)
            self.dir.chmod(0o755)
        command = [DOVECOT, "-F", "-c", str(self.dir / "dovecot.conf")]
        if os.getuid() == 0:
            command = ["setpriv", f"--reuid={runner.pw_uid}", f"--regid={runner.pw_gid}",
                       "--clear-groups", *command]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        self._wait_listening()

    def _write_config(self, runner: pwd.struct_passwd, key: Path) -> None:
        d = self.dir
        group = grp.getgrgid(runner.pw_gid).gr_name
        (d / "passwd").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:{runner.pw_uid}:{runner.pw_gid}::{d}/home/{USER}\n"
        )
        ssl_lines = (
            f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{key}\n" if self.tls else "ssl = no\n"
        )
        imaps = (
            f"  inet_listener imaps {{\n    port = {self.tls_port}\n    ssl = yes\n  }}\n"
            if self.tls
            else ""
        )
        services = "".join(
            f"service {name} {{\n  {line}\n}}\n"
            for name, line in (
                ("anvil", "chroot ="),
                ("stats", "chroot ="),
                ("auth", f"user = {runner.pw_name}"),
                ("auth-worker", f"user = {runner.pw_name}"),
                ("log", f"user = {runner.pw_name}"),
            )
        )
        (d / "dovecot.conf").write_text(
            f"base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n"
            f"instance_name = digest-test-{self.port}\nprotocols = imap\nlisten = 127.0.0.1\n"
            f"default_internal_user = {runner.pw_name}\ndefault_internal_group = {group}\n"
            f"default_login_user = {runner.pw_name}\n"
            f"first_valid_uid = {runner.pw_uid}\nfirst_valid_gid = {runner.pw_gid}\n"
            f"mail_location = maildir:{d}/home/%u/Maildir\n{ssl_lines}"
            "disable_plaintext_auth = no\nauth_mechanisms = plain login\nauth_failure_delay = 0\n"
            f"passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/passwd\n}}\n"
            f"userdb {{\n  driver = passwd-file\n  args = {d}/passwd\n}}\n"
            "service imap-login {\n  chroot =\n"
            f"  inet_listener imap {{\n    port = {self.port}\n  }}\n{imaps}}}\n{services}"
        )

    def _wait_listening(self) -> None:
        def listening() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot did not start: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            except OSError:
                return False
            return True

        try:
            wait_for(listening, 15, what="dovecot to listen")
        except (AssertionError, RuntimeError):
            self.close()
            raise

    def log(self) -> str:
        done = self.process.poll() is not None and self.process.stderr is not None
        stderr = self.process.stderr.read().decode() if done and self.process.stderr else ""
        path = self.dir / "dovecot.log"
        return stderr + (path.read_text() if path.exists() else "")

    def url(self, folder: str = "INBOX", *, tls: bool = True) -> str:
        if tls:
            return f"imaps://{USER}@127.0.0.1:{self.tls_port}/{folder}"
        return f"imap://{USER}@127.0.0.1:{self.port}/{folder}"

    def client(self) -> imaplib.IMAP4:
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.cert))
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL("127.0.0.1", self.tls_port, ssl_context=context)
        else:
            imap = imaplib.IMAP4("127.0.0.1", self.port)
        imap.login(USER, PASSWORD)
        return imap

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        imap = self.client()
        try:
            for raw in messages:
                kind, data = imap.append(folder, None, None, raw)
                assert kind == "OK", data
        finally:
            imap.logout()

    def count(self, folder: str = "INBOX") -> int:
        """Messages in a folder not flagged deleted (0 when it does not exist)."""
        imap = self.client()
        try:
            kind, _ = imap.select(f'"{folder}"')
            if kind != "OK":
                return 0
            _kind, data = imap.uid("SEARCH", "UNDELETED")
            return len(data[0].split())
        finally:
            imap.logout()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)
