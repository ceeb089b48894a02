"""The web endpoint that `digest serve` and `digest run` run: readers' pages and the archive."""

from digest.web.app import make_app
from digest.web.server import listen, serve

__all__ = ["listen", "make_app", "serve"]
