"""Getting an issue to its readers: subscribers, messages, SMTP and the delivery log."""
