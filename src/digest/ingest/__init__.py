"""Polling the feeds: HTTP, parsing, the polling policy, and what a poll stores and reports."""
