"""Typed factories of model edits: the editors of the served LLM and the evaluators of their edits."""

from __future__ import annotations

from app.ports.edits import EditEvaluator, EditorPool
from app.ports.knowledge import LanguageModel


def editor_pool(llm: LanguageModel, data_dir: str) -> EditorPool:
    from app.adapters.editing.pool import TransformersEditorPool

    return TransformersEditorPool(llm, data_dir)


def edit_evaluator(llm: LanguageModel, unrelated: bool) -> EditEvaluator:
    """``unrelated``: also read locality on the fixed unrelated probes (the evaluation protocol; an applied
    edit's own scores do not keep that reading, so applying one does not pay for it)."""
    from app.adapters.editing.evaluate import TransformersEditEvaluator
    from app.adapters.editing.unrelated import unrelated_probes

    return TransformersEditEvaluator(llm, unrelated=unrelated_probes() if unrelated else ())
