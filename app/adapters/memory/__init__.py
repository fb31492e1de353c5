"""In-memory adapters: the test profile, and a backend for machines without a database."""
