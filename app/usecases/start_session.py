"""Start a prompt session: its anchor (the original intent) is the first prompt."""

from __future__ import annotations

from app.domain.prompt_sessions import PromptSession
from app.ports.clock import Clock
from app.ports.generation import ModelCatalog
from app.ports.prompt_sessions import PromptSessionStore


class StartSession:
    def __init__(
        self, store: PromptSessionStore, catalog: ModelCatalog, clock: Clock, default_model: str = "demo"
    ) -> None:
        self._store, self._catalog, self._clock, self._default_model = store, catalog, clock, default_model

    def __call__(self, prompt: str, model: str | None = None, owner: str = "local") -> PromptSession:
        """``model``: the image model of the session's renders (default: the deployment's). Raises
        ``InvalidParameters`` (empty prompt) and ``UnknownModel``."""
        model = model or self._default_model
        self._catalog.get(model)
        session = PromptSession.start(owner, model, prompt, self._clock.now())
        self._store.add(session)
        return session
