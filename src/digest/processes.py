"""Whether a process on this host still runs: the daemon lock's holder, a poll's parser
workers' poll."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Does process ``pid`` run on this host? A zombie (dead, not yet reaped by its parent)
    does not: a `kill -9`'d process is a zombie until whoever started it waits for it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass  # no /proc here: ask the kernel whether the pid exists at all
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except OSError:
        return False
    return True
