"""Fakes of every port, shared by the tests. The in-memory adapters double as the
``test`` profile; the rest are test-only."""

from __future__ import annotations

import json
import math
import re
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Literal

from app.adapters.memory.generation import InMemoryModelCatalog, PatternImageGenerator
from app.adapters.memory.job_reader import InMemoryJobReader
from app.adapters.memory.jobs import InMemoryJobStore, InMemoryUnitOfWorkFactory
from app.adapters.memory.options import InMemoryOwnerOptions
from app.adapters.memory.prompt_sessions import InMemoryPromptSessionStore
from app.demo_world.scenes import Scene
from app.domain.edits import EditorMismatch, EditorNotTrained, EditScores, EditSpec, RollbackOutOfRange
from app.domain.errors import (
    ImageNotFound,
    IndexUnavailable,
    InvalidImage,
    InvalidParameters,
    JobCancelled,
    ModelUnavailable,
)
from app.domain.gece import cosine
from app.domain.jobs import ImageRef, image_id_for
from app.domain.knowledge import Chunk, DocumentInfo, Passage, document_id
from app.domain.models import ModelInfo
from app.domain.specs import ControlKind, ResizeMode
from app.ports.clock import Clock
from app.ports.edits import EditBaseline, EditEvaluator, EditorPool, ModelEditor
from app.ports.generation import (
    BatchHandler,
    ControlPreprocessor,
    GeneratedImage,
    ImageStore,
    InputImage,
    JobExecutor,
    JobHandler,
    RgbImage,
)
from app.ports.knowledge import (
    AnswerGradient,
    DetectorFit,
    Embedder,
    Generation,
    KnowledgeIndex,
    LanguageModel,
    Lexicon,
    LongTailDetector,
    StopRule,
    Vector,
    WordFrequency,
)
from app.ports.prompt_sessions import PromptRewriter, RewardInput, RewardModel
from app.ports.scenes import SceneReader

__all__ = [
    "FakeClock",
    "FakeControlPreprocessor",
    "FakeDetector",
    "FakeEditEvaluator",
    "FakeEditorPool",
    "FakeEmbedder",
    "FakeLanguageModel",
    "FakeLexicon",
    "FakeModelEditor",
    "FakePromptRewriter",
    "FakeReward",
    "FakeSceneReader",
    "FakeWordFrequency",
    "InMemoryImageStore",
    "InMemoryJobReader",
    "InMemoryJobStore",
    "InMemoryKnowledgeIndex",
    "InMemoryModelCatalog",
    "InMemoryOwnerOptions",
    "InMemoryPromptSessionStore",
    "InMemoryUnitOfWorkFactory",
    "InlineExecutor",
    "ManualExecutor",
    "PatternImageGenerator",
    "demo_catalog",
]


class RecordingProgress:
    """A ProgressSink that records its calls and cancels (raises ``JobCancelled``) at step ``cancel_at``."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.cancel_at = cancel_at

    def step(self, done: int, total: int) -> None:
        self.calls.append((done, total))
        if done == self.cancel_at:
            raise JobCancelled()


class FakeClock(Clock):
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(milliseconds=1)
        return self.current


class ManualExecutor(JobExecutor):
    """Records enqueued ids; ``run_all`` runs them in this thread."""

    pulls = False

    def __init__(self) -> None:
        self.queued: list[str] = []
        self.cancelled: set[str] = set()
        self.handler: JobHandler | None = None
        self.keys: dict[str, str | None] = {}

    def start(self, handler: JobHandler, batch_handler: BatchHandler | None = None) -> None:
        self.handler = handler

    def enqueue(self, job_id: str, batch_key: str | None = None) -> None:
        self.queued.append(job_id)
        self.keys[job_id] = batch_key

    def enqueue_many(self, jobs: Sequence[tuple[str, str | None]]) -> None:
        for job_id, batch_key in jobs:
            self.enqueue(job_id, batch_key)

    def cancel(self, job_id: str) -> None:
        self.cancelled.add(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        return job_id not in self.queued

    def live_workers(self) -> int:
        return 1

    def shutdown(self, wait: bool = True) -> None:
        self.queued.clear()

    def run_all(self, cancel_signal: Callable[[str], bool] | None = None) -> None:
        assert self.handler is not None
        while self.queued:
            job_id = self.queued.pop(0)
            self.handler(
                job_id, (lambda j=job_id: cancel_signal(j)) if cancel_signal else (lambda j=job_id: j in self.cancelled)
            )


class InlineExecutor(ManualExecutor):
    """Runs what is queued when a job is waited on, in the waiting thread, like one worker that found it all
    queued: the jobs of one batching key together through the batch handler, the keys in queue order.
    Before ``start`` nothing runs (no worker): a wait sleeps its timeout and says the job is not done."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_handler: BatchHandler | None = None
        self.batches: list[list[str]] = []

    def start(self, handler: JobHandler, batch_handler: BatchHandler | None = None) -> None:
        self.handler, self.batch_handler = handler, batch_handler

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        if self.handler is None:
            time.sleep(timeout or 0.0)
            return False
        while self.queued:
            first = self.queued.pop(0)
            key = self.keys[first]
            batch = [first] + [j for j in self.queued if key is not None and self.keys[j] == key]
            self.queued = [j for j in self.queued if j not in batch]
            self.batches.append(batch)
            if len(batch) == 1 or self.batch_handler is None:
                self.handler(first, partial(self.cancelled.__contains__, first))
            else:
                self.batch_handler(batch, self.cancelled.__contains__)
        return True


class InMemoryImageStore(ImageStore):
    def __init__(self) -> None:
        self.images: dict[str, tuple[GeneratedImage, str]] = {}
        self.inputs: dict[str, InputImage] = {}
        self.input_owners: dict[str, str] = {}

    def save(self, job_id: str, index: int, image: GeneratedImage, parameters: str) -> ImageRef:
        image_id = image_id_for(job_id, index)
        self.images[image_id] = (image, parameters)
        return ImageRef(id=image_id, seed=image.seed, width=image.width, height=image.height, nsfw=image.nsfw)

    def path(self, image_id: str) -> str:
        if image_id not in self.images:
            raise ImageNotFound(image_id)
        return f"memory://{image_id}"

    def read(self, image_id: str) -> RgbImage:
        if image_id not in self.images:
            raise ImageNotFound(image_id)
        image = self.images[image_id][0]
        return RgbImage(image.width, image.height, image.rgb)

    def put_input(self, data: bytes, owner: str = "local") -> InputImage:
        """Accepts ``b"WxH"`` as a picture of that size; anything else is an invalid image."""
        import hashlib

        match = re.fullmatch(rb"(\d+)x(\d+)", data)
        if match is None:
            raise InvalidImage("not an image")
        input_id = "upload-" + hashlib.sha256(owner.encode() + b"\0" + data).hexdigest()[:32]
        self.inputs[input_id] = InputImage(input_id, int(match.group(1)), int(match.group(2)), f"memory://{input_id}")
        self.input_owners[input_id] = owner
        return self.inputs[input_id]

    def input_image(self, input_id: str, owner: str | None = None) -> InputImage:
        if input_id not in self.inputs or owner not in (None, self.input_owners[input_id]):
            raise ImageNotFound(input_id)
        return self.inputs[input_id]

    def delete_job(self, job_id: str) -> None:
        for image_id in [i for i in self.images if i.startswith(f"{job_id}-")]:
            del self.images[image_id]


def demo_catalog() -> InMemoryModelCatalog:
    return InMemoryModelCatalog([ModelInfo(name="demo", path="memory://demo", source="memory://demo", default_size=64)])


class FakeControlPreprocessor(ControlPreprocessor):
    """Records what it was asked; ``none`` at the image's own size gives the image back, anything else a flat
    map of the size whose grey level tells the kind (canny 0, depth 128, none 255)."""

    def __init__(self) -> None:
        self.calls: list[tuple[ControlKind, int, int, ResizeMode]] = []
        self.levels = {ControlKind.CANNY: 0, ControlKind.DEPTH: 128, ControlKind.NONE: 255}

    def preprocess(
        self, image: RgbImage, kind: ControlKind, width: int, height: int, resize_mode: ResizeMode
    ) -> RgbImage:
        self.calls.append((kind, width, height, resize_mode))
        if kind is ControlKind.NONE and (image.width, image.height) == (width, height):
            return image
        return RgbImage(width, height, bytes([self.levels[kind]]) * (width * height * 3))


class FakeSceneReader(SceneReader):
    """Sees the scenes it was told, keyed by the image's exact pixels; an empty gray scene otherwise."""

    def __init__(self) -> None:
        self.scenes: dict[bytes, Scene] = {}

    def teach(self, image: RgbImage, scene: Scene) -> None:
        self.scenes[image.rgb] = scene

    def read(self, image: RgbImage) -> Scene:
        return self.scenes.get(image.rgb, Scene(objects=(), background="gray"))


# --- knowledge queries -----------------------------------------------------------------------------


class FakeLanguageModel(LanguageModel):
    """Knows the answers in ``known`` (confidently); for anything else it answers ``"I don't know"``
    unsure, unless a passage that shares a word with the question ends a sentence with
    ``"... is <answer>."``, when it answers from the passage (its last such sentence).
    Token probabilities are one per word. ``edits`` (question → answer, kept by a
    :class:`FakeModelEditor`) override ``known``, which stands for the base weights and never changes."""

    name = "fake-llm"

    def __init__(self, known: dict[str, str], confident: float = 0.95, unsure: float = 0.3) -> None:
        self.known = {q.lower(): a for q, a in known.items()}
        self.confident, self.unsure = confident, unsure
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.states: list[str] = []  # the questions whose state was read
        self.edits: dict[str, str] = {}

    def generate(
        self, question: str, passages: Sequence[str] = (), max_new_tokens: int = 32, stop: StopRule | None = None
    ) -> Generation:
        self.calls.append((question, tuple(passages)))
        answer, p = self.edits.get(question.lower(), self.known.get(question.lower())), self.confident
        if answer is None:
            answer, p = "I don't know", self.unsure
            for passage in passages:
                found = re.findall(r" is ([^.]+)\.", passage)
                if found and any(w in passage.lower() for w in re.findall(r"[a-z]{4,}", question.lower())):
                    answer, p = found[-1], self.confident
                    break
        probs: list[float] = []
        words = answer.split()[:max_new_tokens]
        for _ in words:
            probs.append(p)
            if stop is not None and stop(probs):
                return Generation(" ".join(words[: len(probs)]), probs, len(question.split()), 0.001, True)
        return Generation(" ".join(words), probs, len(question.split()) + sum(len(x.split()) for x in passages), 0.001)

    def question_state(self, question: str) -> list[float]:
        """Two numbers: 1 then 0 for a question it knows (an edit counts), 0 then 1 for any other."""
        self.states.append(question)
        known = question.lower() in self.edits or question.lower() in self.known
        return [1.0, 0.0] if known else [0.0, 1.0]

    def answer_gradient(self, question: str, answer: str) -> AnswerGradient:
        """Known facts share one gradient direction; anything else points along an axis of its own."""
        vector = [0.0] * 8
        known = self.known.get(question.lower()) == answer
        vector[0 if known else 1 + sum(map(ord, question + answer)) % 7] = 1.0
        return AnswerGradient(0.1 if known else 2.5, vector)


class FakeEmbedder(Embedder):
    """Bag-of-words hashing into ``dim`` buckets, L2-normalised: texts sharing words are similar."""

    name = "fake-embedder"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def embed(self, texts: Sequence[str], kind: Literal["query", "passage"]) -> list[list[float]]:
        out = []
        for text in texts:
            v = [0.0] * self.dim
            for word in re.findall(r"\w+", text.lower()):
                v[zlib.crc32(word.encode()) % self.dim] += 1.0
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        return out


class InMemoryKnowledgeIndex(KnowledgeIndex):
    """Brute-force cosine search over chunks held in a dict."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[Chunk, list[float]]] = {}  # (collection, chunk id) -> row
        self.unavailable = False

    def _check(self) -> None:
        if self.unavailable:
            raise IndexUnavailable("The fake index is down.")

    def replace_source(
        self, source: str, chunks: Sequence[Chunk], vectors: Sequence[Vector], collection: str = "shared"
    ) -> int:
        self._check()
        old = [key for key, (c, _) in self.rows.items() if key[0] == collection and c.source == source]
        for key in old:
            del self.rows[key]
        for chunk, vector in zip(chunks, vectors, strict=True):
            self.rows[(collection, chunk.id)] = (chunk, list(vector))
        return len(old)

    def search(self, vector: Vector, k: int, collections: Sequence[str] | None = None) -> list[Passage]:
        self._check()
        rows = [row for key, row in self.rows.items() if collections is None or key[0] in collections]
        scored = [(cosine(vector, v), c) for c, v in rows]
        scored.sort(key=lambda p: (-p[0], p[1].id))
        return [Passage(c.id, c.source, c.text, s) for s, c in scored[:k]]

    def keyword_search(self, terms: Sequence[str], k: int, collections: Sequence[str] | None = None) -> list[Passage]:
        """Chunks scored by how many of the distinct terms they contain (the words of ``simple_words``)."""
        from app.adapters.vector import simple_words

        self._check()
        wanted = set(terms)
        scored = []
        for key, (chunk, _) in self.rows.items():
            if collections is None or key[0] in collections:
                hits = len(wanted & set(simple_words(chunk.text)))
                if hits:
                    scored.append((float(hits), chunk))
        scored.sort(key=lambda p: (-p[0], p[1].id))
        return [Passage(c.id, c.source, c.text, s) for s, c in scored[:k]]

    def documents(
        self, collections: Sequence[str], limit: int = 100, offset: int = 0, source: str | None = None
    ) -> tuple[list[DocumentInfo], int]:
        self._check()
        grouped: dict[tuple[str, str], list[Chunk]] = {}
        for (collection, _), (chunk, _) in self.rows.items():
            if collection in collections and (source is None or chunk.source == source):
                grouped.setdefault((collection, chunk.source), []).append(chunk)
        items = [
            DocumentInfo(document_id(c, src), src, c, len(chunks), sum(len(x.text) for x in chunks))
            for (c, src), chunks in sorted(grouped.items())
        ]
        return items[offset : offset + limit], len(items)

    def delete_source(self, source: str, collection: str) -> int:
        self._check()
        old = [key for key, (c, _) in self.rows.items() if key[0] == collection and c.source == source]
        for key in old:
            del self.rows[key]
        return len(old)

    def count(self) -> int:
        self._check()
        return len(self.rows)


class FakeWordFrequency(WordFrequency):
    def __init__(self, zipf: dict[str, float] | None = None, default: float = 3.0) -> None:
        self.table, self.default = zipf or {}, default

    def words(self, text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())

    def zipf(self, word: str) -> float:
        return self.table.get(word, self.default)


class FakeLexicon(Lexicon):
    def __init__(self, synonyms: dict[str, set[str]] | None = None) -> None:
        self.table = synonyms or {}

    def stem(self, word: str) -> str:
        return word[:-1] if word.endswith("s") else word

    def synonyms(self, word: str) -> frozenset[str]:
        return frozenset(self.table.get(word, set()))


class FakeDetector(LongTailDetector):
    """A one-feature threshold halfway between the classes: ``feature`` if it is offered, else the
    first feature offered; long-tail probability 1 on the long-tail side of the cut, else 0."""

    def __init__(self, feature: str = "mean_token_prob") -> None:
        self.feature = feature

    def fit(self, rows: Sequence[dict[str, float]], labels: Sequence[bool], features: Sequence[str]) -> DetectorFit:
        feature = self.feature if self.feature in features else features[0]
        tail = [r[feature] for r, y in zip(rows, labels, strict=True) if y] or [0.0]
        head = [r[feature] for r, y in zip(rows, labels, strict=True) if not y] or [1.0]
        below = sum(tail) / len(tail) < sum(head) / len(head)  # the long tail lies below the cut
        cut = (max(tail) + min(head)) / 2 if below else (min(tail) + max(head)) / 2
        return DetectorFit({"cut": cut, "feature": feature, "below": below}, [feature])

    def probability(self, fit: DetectorFit, row: dict[str, float]) -> float:
        cut, feature, below = fit.params["cut"], fit.params["feature"], fit.params["below"]
        assert isinstance(cut, float) and isinstance(feature, str)
        return 1.0 if (row[feature] < cut) == below else 0.0


# --- model edits -------------------------------------------------------------------------------------


class FakeModelEditor(ModelEditor):
    """Edits a :class:`FakeLanguageModel` by remembering question → target in order: after ``apply``,
    ``generate(question)`` answers the target (a later edit of the same question wins); a rollback forgets
    the newer ones. ``export_state`` writes the edits as a ``manifest.json`` with the fields of
    :class:`~app.adapters.editing.record_folder.RecordFolder` (editor, model, count, settings) and the edits inline,
    so the real editors and the fake refuse each other's folders. A target with a non-printable character
    stands for one the tokenizer cannot encode."""

    MANIFEST = "manifest.json"

    def __init__(self, lm: FakeLanguageModel | None = None, name: str = "fake", **settings: object) -> None:
        self.name = name
        self.lm = lm if lm is not None else FakeLanguageModel({})
        self.settings = dict(settings)
        self.edits: list[tuple[str, str]] = []
        self.applied = 0

    def apply(self, edit: EditSpec) -> None:
        if not edit.target.isprintable():
            raise InvalidParameters(f"The target {edit.target!r} cannot be encoded by the tokenizer.", field="target")
        self.edits.append((edit.prompt, edit.target))
        self._sync()

    def rollback(self, keep: int) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= self.applied:
            raise RollbackOutOfRange(f"Rollback point must be between 0 and {self.applied}, got {keep}.")
        del self.edits[keep:]
        self._sync()

    def export_state(self, folder: str) -> None:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        manifest = {
            "editor": self.name,
            "model": self.lm.name,
            "count": len(self.edits),
            "settings": self.settings,
            "edits": [list(e) for e in self.edits],
        }
        (path / self.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")

    def load_state(self, folder: str, keep: int) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise RollbackOutOfRange(f"The number of edits to load must be at least 0, got {keep}.")
        file = Path(folder) / self.MANIFEST
        data = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {"count": 0, "edits": []}
        if keep and (data.get("editor"), data.get("model")) != (self.name, self.lm.name):
            raise ModelUnavailable(f"The edit state in {folder} was written by another editor or for another model.")
        if keep > int(data.get("count", 0)):
            raise ModelUnavailable(f"The edit state in {folder} holds {data.get('count', 0)} edits, not {keep}.")
        self.edits = [(str(p), str(t)) for p, t in data["edits"][:keep]]
        self._sync()

    def _sync(self) -> None:
        self.lm.edits = {prompt.lower(): target for prompt, target in self.edits}
        self.applied = len(self.edits)


class FakeEditorPool(EditorPool):
    """The editors of one :class:`FakeLanguageModel`, each a :class:`FakeModelEditor` named like the real
    ones; states go to ``folder``. ``untrained`` names editors that raise ``EditorNotTrained``."""

    def __init__(self, lm: FakeLanguageModel, folder: str, untrained: Sequence[str] = ()) -> None:
        self.lm, self.folder, self.untrained = lm, folder, set(untrained)
        self.model = lm.name
        self.chain: tuple[str, ...] = ()
        self.current: FakeModelEditor | None = None
        self.saves = 0

    def editor(self, name: str) -> ModelEditor:
        if name in self.untrained:
            raise EditorNotTrained(
                f"{name} has no trained checkpoint: run `atelier edits train --editor {name}` first."
            )
        if self.current is not None and self.current.name == name:
            return self.current
        if self.current is not None and self.current.applied:
            raise EditorMismatch("another editor's edits are applied")
        self.current = FakeModelEditor(self.lm, name)
        return self.current

    def save(self, editor: ModelEditor) -> None:
        editor.export_state(self.folder)
        self.saves += 1

    def load(self, name: str, keep: int) -> ModelEditor:
        if self.current is not None and self.current.name != name:
            self.current.rollback(0)
        editor = self.editor(name)
        editor.load_state(self.folder, keep)
        return editor

    def reset(self) -> None:
        if self.current is not None:
            self.current.rollback(0)


class FakeEditEvaluator(EditEvaluator):
    """Reliability: share of edits the fake model answers with their target; generality: the same over
    rephrasings; locality: share of probes answered as in the baseline (answers hashed to token ids)."""

    def __init__(self, lm: FakeLanguageModel) -> None:
        self.lm = lm

    def _answer(self, prompt: str) -> int:
        return zlib.crc32(self.lm.generate(prompt).text.encode())

    def baseline(self, edits: Sequence[EditSpec]) -> EditBaseline:
        return EditBaseline([[self._answer(p.prompt)] for e in edits for p in e.locality])

    def score(self, edits: Sequence[EditSpec], baseline: EditBaseline, fluency_samples: int = 0) -> EditScores:
        rel = sum(self.lm.generate(e.prompt).text == e.target for e in edits) / len(edits)
        pairs = [(r, e.target) for e in edits for r in e.rephrases]
        gen = sum(self.lm.generate(r).text == t for r, t in pairs) / len(pairs) if pairs else None
        now = [[self._answer(p.prompt)] for e in edits for p in e.locality]
        loc = sum(a == b for a, b in zip(now, baseline.locality_tokens, strict=True)) / len(now) if now else None
        return EditScores(rel, gen, loc, None, len(edits))


# --- prompt sessions -------------------------------------------------------------------------------


class FakePromptRewriter(PromptRewriter):
    """Returns the rewrites it was told for (prompt, instruction), else ``prompt + " " + instruction``."""

    name = "fake"

    def __init__(self, answers: dict[tuple[str, str], list[str]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, str, int, int]] = []

    def rewrite(self, prompt: str, instruction: str, n: int, seed: int) -> list[str]:
        self.calls.append((prompt, instruction, n, seed))
        return list(self.answers.get((prompt, instruction), [f"{prompt} {instruction}"]))[:n]


class FakeReward(RewardModel):
    """Scores a prompt by the table it was given (0.5 for one it does not know)."""

    def __init__(self, name: str, table: dict[str, float] | None = None) -> None:
        self.name = name
        self.table = table or {}
        self.seen: list[RewardInput] = []

    def score(self, inputs: list[RewardInput]) -> list[float]:
        self.seen.extend(inputs)
        return [self.table.get(i.prompt, 0.5) for i in inputs]
