"""digest: poll the blogs of an OPML file and mail a weekly reading issue."""

import logging

__version__ = "0.1.0"
HOME_PAGE = "https://github.com/digest-dev/digest"

logging.getLogger("digest").addHandler(logging.NullHandler())
