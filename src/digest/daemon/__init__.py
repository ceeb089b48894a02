"""The long-running service: schedules polls and sends, one per database, and reports status."""
