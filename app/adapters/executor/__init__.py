"""Job executors."""
