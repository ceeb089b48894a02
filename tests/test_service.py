"""contrib/digest.service: systemd accepts it, it asks for what the README promises, and the
command it starts is one digest understands, stopped the way it stops it."""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import digest_env

UNIT = Path(__file__).resolve().parents[1] / "contrib" / "digest.service"
DIGEST = Path(sys.executable).with_name("digest")  # the venv's, where the unit has /opt/digest


def directives() -> dict[str, str]:
    """The unit's Key=Value lines (each key once in ours), comments skipped."""
    found = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            assert key not in found, f"{key} twice"
            found[key] = value
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path) -> None:
    unit = tmp_path / "digest.service"
    exec_start = directives()["ExecStart"]
    unit.write_text(UNIT.read_text().replace(exec_start.split()[0], str(DIGEST)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # Unknown keys and bad values are only warnings (exit 0): the output must be empty too.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_unit_runs_a_hardened_dedicated_service() -> None:
    unit = directives()
    assert (unit["User"], unit["StateDirectory"]) == ("digest", "digest")
    assert unit["WorkingDirectory"] == "/var/lib/digest"
    assert (unit["ProtectSystem"], unit["NoNewPrivileges"]) == ("strict", "yes")
    assert (unit["Restart"], unit["KillSignal"]) == ("on-failure", "SIGTERM")
    # digest run exits within 10 s of SIGTERM: systemd must not SIGKILL it sooner.
    assert int(unit["TimeoutStopSec"]) > 10
    assert unit["ExecStart"] == "/opt/digest/bin/digest run"


def test_the_units_command_starts_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """What systemd does: start ExecStart in the state directory with the unit's environment,
    later SIGTERM it. Exit 0 (so Restart=on-failure leaves it stopped), state where promised."""
    config = tmp_path / "etc" / "digest.toml"
    config.parent.mkdir()
    config.write_text('[web]\nenabled = false\n[feeds]\npoll_interval = "1h"\n')
    state = tmp_path / "var-lib-digest"
    state.mkdir()
    (state / "feeds.opml").write_text(
        '<?xml version="1.0"?><opml version="2.0"><head/><body/></opml>'
    )
    unit = directives()
    env = dict(line.split("=", 1) for line in [unit["Environment"]])
    env["DIGEST_CONFIG"] = str(config)  # the unit's /etc/digest/digest.toml
    argv = [str(DIGEST), *unit["ExecStart"].split()[1:]]
    proc = subprocess.Popen(argv, cwd=state, env=digest_env(env), stderr=subprocess.PIPE, text=True)
    said: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(proc, said), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        while not any("digest daemon started" in line for line in seen):
            line = said.get(timeout=30)
            assert line is not None, "".join(seen)  # it exited
            seen.append(line)
        proc.send_signal(signal.SIGTERM)  # running: the lock held, the scheduler started
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        reader.join(10)
    while (line := said.get_nowait()) is not None:
        seen.append(line)
    assert "Traceback" not in "".join(seen) and seen[-1].rstrip().endswith("stopped")
    assert (state / "digest.db").stat().st_mode & 0o077 == 0  # UMask or not: private


def read_lines(proc: subprocess.Popen[str], into: queue.Queue[str | None]) -> None:
    """Each line the process writes on stderr, then None at its end."""
    assert proc.stderr is not None
    for line in proc.stderr:
        into.put(line)
    into.put(None)
