"""Atelier: a Chinese-first AIGC and LLM platform.

Importing this package has no side effects and loads no heavy library; the
embedded facade lives in :mod:`app.entrypoints.library`::

    from app.entrypoints.library import Atelier
"""

__version__ = "0.1.0"
