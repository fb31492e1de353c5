"""Start a prompt session: its anchor (the original intent) is the first prompt."""

from __future__ import annotations

from app.domain.prompt_sessions import PromptSession, clean_model_name
from app.ports.clock import Clock
from app.ports.generation import ModelCatalog
from app.ports.prompt_sessions import PromptSessionStore
from app.usecases.take_turn import edit_model_info


class StartSession:
    def __init__(
        self, store: PromptSessionStore, catalog: ModelCatalog, clock: Clock, default_model: str = "demo"
    ) -> None:
        self._store, self._catalog, self._clock, self._default_model = store, catalog, clock, default_model

    def __call__(
        self, prompt: str, model: str | None = None, owner: str = "local", edit_model: str | None = None
    ) -> PromptSession:
        """``model``: the image model of the session's renders (default: the deployment's). ``edit_model``:
        the model its edit turns use when a turn names none (default: the deployment's), checked now so a
        session is never started with a model that cannot edit. Raises ``InvalidParameters`` (empty prompt,
        an edit model whose family does not edit by instruction) and ``UnknownModel``."""
        model = model or self._default_model
        self._catalog.get(model)
        edit_model = clean_model_name(edit_model, "edit_model")
        if edit_model is not None:
            edit_model_info(self._catalog, edit_model)
        session = PromptSession.start(owner, model, prompt, self._clock.now(), edit_model=edit_model)
        self._store.add(session)
        return session
