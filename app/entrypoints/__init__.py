"""CLI (Click), HTTP (FastAPI) and the embedded library facade."""
