"""The one exception tree of digest; the CLI and the web app translate it at the edges.

DigestError
├── ConfigError          a setting, the config file or the OPML file is unusable
├── StorageError         the database failed or is in a state we can't use
│   ├── LockedError      another daemon holds the database
│   └── NoDatabaseError  a command that only reads found no database (and made none)
├── FeedError(url)       one feed failed; the others go on
│   ├── FetchError       network, HTTP status, size cap
│   └── ParseError       not a feed, or a feed feedparser can't read
├── InputError           bad user input (an email address, a date, a file)
├── RenderError          a template failed
├── MailboxError         the bounce mailbox (IMAP) could not be read
└── SendError            SMTP failed
    ├── TransientSendError   4xx, dropped connection: try again later
    └── PermanentSendError   5xx for one recipient: don't retry
"""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error digest raises on purpose."""


class ConfigError(DigestError):
    """A setting, the config file or the OPML file is unusable."""


class StorageError(DigestError):
    """The database failed or is in a state we can't use."""


class LockedError(StorageError):
    """Another process holds the daemon lock."""


class NoDatabaseError(StorageError):
    """There is no database yet, and a command that only reads makes none."""


class FeedError(DigestError):
    """One feed failed."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Default pickling replays args=(message,) and fails: FeedErrors cross process pools.
        return (type(self), (self.url, self.message))


class FetchError(FeedError):
    """The feed could not be fetched."""

    def __init__(self, url: str, message: str, status_code: int | None = None) -> None:
        super().__init__(url, message)
        self.status_code = status_code

    def __reduce__(self) -> tuple[type, tuple[str, str, int | None]]:  # type: ignore[override]
        return (type(self), (self.url, self.message, self.status_code))


class ParseError(FeedError):
    """The body is not a feed we can read."""


class InputError(DigestError):
    """Bad input from the user: an address, a date, a file."""


class RenderError(DigestError):
    """A template failed to render."""


class MailboxError(DigestError):
    """The bounce mailbox could not be read (connection, login, folder)."""


class SendError(DigestError):
    """Delivery failed."""


class TransientSendError(SendError):
    """Try again later (4xx reply, dropped connection)."""


class PermanentSendError(SendError):
    """The server refused this recipient for good (5xx); ``status``: its status code (5.1.1,
    or 5.0.0 for a bare 550), judged as a bounce report's would be."""

    def __init__(self, message: str, status: str = "5.0.0") -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (str(self), self.status))
