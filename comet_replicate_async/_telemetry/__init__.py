"""OpenTelemetry for a session: the switch and its no-op path, the instruments, and the spans of predictions and batches."""
