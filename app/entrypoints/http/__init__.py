"""The HTTP API (FastAPI). Build it with :func:`app.entrypoints.http.app.create_app`."""
