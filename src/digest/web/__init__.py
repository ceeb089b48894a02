"""The web endpoint that `digest serve` and `digest run` run: readers' pages and the archive."""

from digest.web.app import make_app
from digest.web.server import listen, serve
from digest.web.webhooks import check_settings

__all__ = ["check_settings", "listen", "make_app", "serve"]
