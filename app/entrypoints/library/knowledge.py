"""Knowledge queries in the embedded facade: ``atelier.knowledge.ask(...)`` and friends.

with Atelier.open() as atelier:
    atelier.knowledge.ingest(["docs/"])                # PDF, HTML, DOCX, md, txt, jsonl; folders recursively
    atelier.knowledge.calibrate("geo/questions.jsonl", split="calibration")
    query = atelier.knowledge.ask("What is the capital of Tuvalu?")
    print(query.answer, query.decision, [p.source for p in query.passages])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.composition import Container
from app.domain.knowledge import DETECTOR_FEATURES, SHARED_COLLECTION, Calibration, DocumentInfo, KnowledgeQuery
from app.ports.knowledge import QueryPage
from app.usecases.ask_question import Retrieval
from app.usecases.calibrate_detector import InstanceSignals, LabelledQuestion
from app.usecases.evaluate_answers import ModeResult, evaluate_answers
from app.usecases.ingest_documents import IngestReport
from app.usecases.manage_documents import DocumentPage

Progress = Callable[[int, int], None]


class Knowledge:
    def __init__(self, container: Container) -> None:
        self._container = container

    def ask(
        self, question: str, *, owner: str = "local", top_k: int = 5, retrieval: Retrieval = "auto"
    ) -> KnowledgeQuery:
        """Answer ``question``; retrieves only when the calibrated detector judges it long-tail
        (``retrieval="always"``/``"never"`` force either way). The query is stored before it returns."""
        result: KnowledgeQuery = self._container.ask_question()(question, owner, top_k=top_k, retrieval=retrieval)
        return result

    def query(self, query_id: str, owner: str | None = None) -> KnowledgeQuery:
        result: KnowledgeQuery = self._container.knowledge_queries().get(query_id, owner)
        return result

    def queries(self, owner: str | None = None, limit: int = 20, offset: int = 0) -> QueryPage:
        page: QueryPage = self._container.knowledge_queries().list(owner, limit, offset)
        return page

    def ingest(
        self, paths: Sequence[str], progress: Progress | None = None, collection: str = SHARED_COLLECTION
    ) -> IngestReport:
        """Ingest PDF, HTML, DOCX, Markdown, text and JSONL files or folders of them; a source ingested again
        replaces its chunks.
        ``collection``: the shared one every caller searches (the default), or an owner's own."""
        return self.ingest_texts(self._container.documents().documents(paths), progress, collection)

    def ingest_texts(
        self,
        documents: Sequence[tuple[str, str]],
        progress: Progress | None = None,
        collection: str = SHARED_COLLECTION,
    ) -> IngestReport:
        report: IngestReport = self._container.ingest_documents()(documents, progress, collection)
        return report

    def ingest_files(
        self,
        files: Sequence[tuple[str, bytes]],
        progress: Progress | None = None,
        collection: str = SHARED_COLLECTION,
    ) -> IngestReport:
        """Ingest files given as (name, bytes), their kind by the name's suffix (PDF, HTML, DOCX, Markdown, text,
        JSONL): what an upload holds. Every file is read before any document is stored."""
        reader = self._container.documents()
        documents = [doc for name, data in files for doc in reader.parse(name, data)]
        return self.ingest_texts(documents, progress, collection)

    def documents(
        self, owner: str = "local", limit: int = 100, offset: int = 0, source: str | None = None
    ) -> DocumentPage:
        """The documents ``owner`` searches (its own collection's and the shared one's), by collection and
        source."""
        page: DocumentPage = self._container.list_documents()(owner, limit, offset, source)
        return page

    def delete(
        self, document_id: str | None = None, *, source: str | None = None, collection: str = SHARED_COLLECTION
    ) -> DocumentInfo:
        """Delete a document, by its id or by its source in ``collection``, from both the vector and the keyword
        index; returns what it was."""
        shared = collection == SHARED_COLLECTION
        owner = "local" if shared else collection
        found: DocumentInfo = self._container.delete_document()(owner, True, document_id, source, shared)
        return found

    def calibrate(
        self,
        dataset: str,
        *,
        split: str | None = None,
        limit: int | None = None,
        features: Sequence[str] = DETECTOR_FEATURES,
        decision_threshold: float = 0.5,
        progress: Progress | None = None,
        early_precision: float | None = None,
        gate: str = "auto",
    ) -> tuple[Calibration, list[InstanceSignals]]:
        """Calibrate the detector on a jsonl file of ``{"question", "answers"}`` lines (``split`` filters
        on a ``"split"`` field) and store the calibration for the configured LLM. The early decision
        retrieves above ``decision_threshold`` too, or, given ``early_precision``, above the lowest cut
        that was that precise about the long-tail label on these questions. ``gate``: ``auto`` chooses the gate
        that decides after the plain answer by cross-validation (detector, token_prob or combined), or name one."""
        items = self._labelled(dataset, split, limit)
        name = dataset if split is None else f"{dataset}:{split}"
        result: tuple[Calibration, list[InstanceSignals]] = self._container.calibrate_detector()(
            items, name, features, decision_threshold, progress, early_precision, gate
        )
        return result

    def evaluate(
        self,
        dataset: str,
        *,
        split: str | None = None,
        limit: int | None = None,
        modes: Sequence[Retrieval] = ("auto", "always", "never"),
        top_k: int = 5,
        progress: Progress | None = None,
    ) -> list[ModeResult]:
        """Accuracy, retrieval rate and mean latency of each retrieval mode on labelled questions."""
        items = self._labelled(dataset, split, limit)
        return evaluate_answers(self._container.ask_question(), items, modes, top_k, progress)

    def calibration(self) -> Calibration | None:
        """The current calibration of the configured LLM, if any."""
        found: Calibration | None = self._container.calibrations().latest(self._container.llm().name)
        return found

    def _labelled(self, dataset: str, split: str | None, limit: int | None) -> list[LabelledQuestion]:
        rows = self._container.documents().labelled(dataset, split, limit)
        return [LabelledQuestion(r["question"], r["answers"]) for r in rows]
