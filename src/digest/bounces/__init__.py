"""Hearing back from inboxes: bounces and complaints read, classified and applied to subscribers."""
