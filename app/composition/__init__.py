"""The composition root: which adapter serves which port, per profile.

``Container`` holds the providers; the modules beside it hold the typed factories of each capability
(``generation``, ``knowledge``, ``edits``, ``prompts``) and of the database (``sql``). Entrypoints resolve
use cases and ports from a container; they import no adapter and no factory from here.
"""

from app.composition.container import Container
from app.composition.logs import configure_logging

__all__ = ["Container", "configure_logging"]
