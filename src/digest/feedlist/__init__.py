"""The feed list: blog lists and OPML files in and out, and finding a blog's feed."""
