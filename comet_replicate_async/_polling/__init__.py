"""Predictions watched to their end: the registry of those in flight, the poll schedule and the one poller task."""
