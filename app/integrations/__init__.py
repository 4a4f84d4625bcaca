"""Thin clients for the outside world. Each call has a timeout; callers are RQ jobs."""
