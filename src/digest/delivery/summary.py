"""What one `digest send` did (or, dry run, would do): the record the CLI prints and the daemon
reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from digest.delivery.deliverylog import left_in_flight
from digest.words import counted, show_span, show_time


@dataclass
class SendSummary:
    """What one `digest send` did (or, dry run, would do)."""

    mode: str = "send"  # send | resumed | dry-run | test | off | empty | covered
    issue: int | None = None
    subject: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    sent: int = 0
    failed: int = 0  # a 5xx for that recipient
    skipped: int = 0  # no longer active, or their sections are empty this week
    pending: int = 0  # left for the next run (transient failures, a stop)
    already: int = 0  # delivered by an earlier run
    resent: int = 0  # in flight when a run died: sent again, may be duplicates
    # In flight under a run that may still live (its lock taken over, not found dead): left
    # 'sending' until deliverylog.IN_FLIGHT_GRACE has passed since their claim.
    waiting: int = 0
    renders: int = 0  # distinct section choices rendered
    bounced: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # why each failed one failed
    stopped: bool = False
    aborted: str | None = None
    last_error: str | None = None  # the last SMTP error that left a message for later
    test_to: str | None = None
    dry_run: DryRunTally | None = None  # a dry run's counts (its recipients go to the caller)
    sending: bool = True  # smtp.host is set (a dry run says what a real send would do)
    covered_until: datetime | None = None  # covered: the last issue's end, past the one asked
    seconds: float = 0.0
    # resumed: what this run did next, after finishing the issue a crash or stop left.
    then: SendSummary | None = None

    def line(self, zone: str = "UTC") -> str:
        """What the send did in a line, its times in ``zone`` (people's; logs keep UTC)."""
        name = f"issue #{self.issue}" if self.issue is not None else "the issue"
        if self.mode == "empty" and self.window_start and self.window_end:
            return "nothing to send: no new posts from " + show_span(
                self.window_start, self.window_end, zone
            )
        if self.mode == "covered":
            return (
                "nothing to send: the issues sent already cover up to "
                f"{show_time(self.covered_until, zone, none='?')} (asked for the week ending "
                f"{show_time(self.window_end, zone, none='?')})"
            )
        if self.mode == "off":
            return f"sending is off (smtp.host is not set): {name} recorded, nothing sent"
        if self.mode == "test":
            return f"test copy of {name} sent to {self.test_to}; nothing recorded"
        if self.mode == "dry-run":
            return self._dry_run_line(name)
        if self.mode == "resumed":
            name = f"resumed {name}"
        parts = [f"{self.sent} sent", f"{self.failed} failed", f"{self.skipped} skipped"]
        if self.already:
            parts.append(f"{self.already} sent before")
        if self.pending:
            parts.append(f"{self.pending} left for the next `digest send`")
        line = f"{name}: " + ", ".join(parts) + f" in {self.seconds:.1f}s"
        if self.resent:
            line += f"; {self.resent} in flight at a crash were sent again"
        if self.waiting:
            line += f"; {left_in_flight(self.waiting)}"
        if self.failures:
            more = f" (and {len(self.failures) - 3} more)" if len(self.failures) > 3 else ""
            line += f"; failed: {'; '.join(self.failures[:3])}{more}"
        if self.bounced:
            line += f"; now bounced: {', '.join(self.bounced)}"
        if self.aborted:
            line += f"; stopped early: {self.aborted}"
        elif self.stopped:
            line += "; stopped on request"
        elif self.pending and self.last_error:
            line += f"; the last SMTP error: {self.last_error}"
        if self.then is not None:
            line += f"; then {self.then.line(zone)}"
        return line

    def reason(self) -> str | None:
        """Why deliveries are left, in a line (None when none is, or none was tried)."""
        if self.aborted:
            return self.aborted
        if self.stopped:
            return "stopped on request"
        if self.pending and self.last_error:
            return self.last_error
        return left_in_flight(self.waiting) if self.waiting else None

    def left(self) -> int:
        """The deliveries left for a later run, this issue's and what followed's."""
        return self.pending + (self.then.left() if self.then is not None else 0)

    def complete(self) -> bool:
        """Did the run finish every delivery? (A stop or transient failures leave some.)"""
        done = not (self.stopped or self.aborted or self.pending)
        return done and (self.then is None or self.then.complete())

    def _dry_run_line(self, name: str) -> str:
        tally = self.dry_run or DryRunTally()
        active = counted(tally.active, "active subscriber")
        line = f"dry run: {name} would go to {tally.gets} of {active}"
        if tally.by_choice:
            line += ": " + "; ".join(
                f"{sections} ({n}): {subject}" for sections, (n, subject) in tally.by_choice.items()
            )
        if not self.sending:
            return line + (
                "; sending is off (smtp.host is not set): `digest send` would record the "
                "issue and mail no one"
            )
        return line + "; nothing sent"

    def as_json(self) -> dict[str, Any]:
        data = {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()
        }
        data["seconds"] = round(self.seconds, 3)
        data["left"], data["reason"] = self.pending, self.reason()
        data["then"] = self.then.as_json() if self.then is not None else None
        data["dry_run"] = self.dry_run.as_json() if self.dry_run is not None else None
        return data


@dataclass
class DryRunTally:
    """What a dry run counted: the active subscribers, those who would get the issue, and
    each choice of sections that gets mail with its subscribers and subject."""

    active: int = 0
    gets: int = 0
    by_choice: dict[str, tuple[int, str]] = field(default_factory=dict)

    def add(self, choice: str, subject: str | None) -> None:
        """One active subscriber, of section choice ``choice``; ``subject`` when they get it."""
        self.active += 1
        if subject is None:
            return
        self.gets += 1
        count, _ = self.by_choice.get(choice, (0, subject))
        self.by_choice[choice] = (count + 1, subject)

    def as_json(self) -> dict[str, Any]:
        by_choice = {
            k: {"subscribers": n, "subject": subj} for k, (n, subj) in self.by_choice.items()
        }
        return {"active": self.active, "gets": self.gets, "by_choice": by_choice}
