"""The ``atelier`` command line (Click)."""
