"""Start a prompt session: its anchor (the original intent) is the first prompt."""

from __future__ import annotations

from app.domain.prompt_sessions import PromptSession
from app.ports.clock import Clock
from app.ports.generation import ModelCatalog
from app.ports.prompt_sessions import PromptSessionStore


class StartSession:
    def __init__(self, store: PromptSessionStore, catalog: ModelCatalog, clock: Clock) -> None:
        self._store, self._catalog, self._clock = store, catalog, clock

    def __call__(self, prompt: str, model: str, owner: str = "local") -> PromptSession:
        """Raises ``InvalidParameters`` (empty prompt) and ``UnknownModel``."""
        self._catalog.get(model)
        session = PromptSession.start(owner, model, prompt, self._clock.now())
        self._store.add(session)
        return session
