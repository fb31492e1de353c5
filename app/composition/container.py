"""The container: one provider per port and use case, selected per profile.

Profiles: ``local`` (SQLite in the data dir, diffusers, in-process threads), ``server`` (a database URL
such as PostgreSQL, several workers) and ``test`` (in-memory stores, a deterministic pattern generator,
no model files). Heavy libraries load in the factories when a provider is first called, so building a
container is cheap; resolving a provider builds objects and does nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dependency_injector import containers, providers

from app.adapters.events import LocalJobEvents
from app.adapters.executor.threads import ThreadJobExecutor
from app.adapters.memory.edits import InMemoryEditLog
from app.adapters.memory.generation import PatternImageGenerator
from app.adapters.memory.job_reader import InMemoryJobReader, InMemorySchema
from app.adapters.memory.jobs import InMemoryJobStore, InMemoryUnitOfWorkFactory
from app.adapters.memory.knowledge import InMemoryCalibrationStore, InMemoryKnowledgeQueryStore
from app.adapters.memory.options import InMemoryOwnerOptions
from app.adapters.memory.prompt_sessions import InMemoryPromptSessionStore
from app.adapters.memory.training import InMemoryTrainingJobStore
from app.adapters.memory.workers import InMemoryWorkerRegistry
from app.adapters.storage.images import FileImageStore
from app.adapters.system import SystemClock, process_gone
from app.composition import edits, generation, knowledge, prompts, sql, training
from app.usecases.accept_generation import AcceptGeneration
from app.usecases.apply_edit import ApplyEdit
from app.usecases.ask_question import AskQuestion
from app.usecases.await_job import AwaitJob
from app.usecases.calibrate_detector import CalibrateDetector
from app.usecases.cancel_job import CancelJob
from app.usecases.choose_candidate import ChooseCandidate
from app.usecases.claim_jobs import ClaimJobs
from app.usecases.complete_text import CompleteText
from app.usecases.delete_jobs import DeleteJob, PruneJobs
from app.usecases.evaluate_editor import EvaluateEditor
from app.usecases.ingest_documents import IngestDocuments
from app.usecases.manage_documents import DeleteDocument, ListDocuments
from app.usecases.move_head import MoveHead
from app.usecases.preview_control_map import PreviewControlMap
from app.usecases.read_edit_log import ReadEditLog
from app.usecases.read_scene import ReadScene
from app.usecases.recover_jobs import RecoverJobs
from app.usecases.register_demo_models import RegisterDemoModels
from app.usecases.render_prompts import KeepAsInput, RenderPrompts
from app.usecases.resolve_images import ResolveImages
from app.usecases.restore_edits import RestoreEdits
from app.usecases.rollback_edits import RollbackEdits
from app.usecases.run_generation import RunGeneration
from app.usecases.run_training import RunTraining
from app.usecases.score_prompts import ScorePrompts
from app.usecases.start_session import StartSession
from app.usecases.submit_generation import SubmitGeneration
from app.usecases.submit_training import SubmitTraining
from app.usecases.take_turn import TakeTurn

STATE_PROBE_L2 = 100.0  # see docs/knowledge.md: hundreds of hidden-state inputs, a few hundred questions


class Container(containers.DeclarativeContainer):
    """Build with ``Container(settings=...)``; override any provider in tests."""

    settings: providers.Dependency[Any] = providers.Dependency()
    profile = providers.Callable(lambda s: "test" if s.profile == "test" else "sql", settings)
    clock = providers.Singleton(SystemClock)

    # -- the database --------------------------------------------------------------------------
    memory_jobs = providers.Singleton(InMemoryJobStore)
    engine = providers.Resource(sql.engine, settings.provided.resolved_database_url)
    schema = providers.Selector(
        profile,
        sql=providers.Singleton(sql.schema, settings.provided.resolved_database_url),
        test=providers.Singleton(InMemorySchema),
    )
    sessions = providers.Singleton(sql.sessions, engine, schema)
    # Committed job changes, announced to waiters (idle workers, progress streams) in this process and, on
    # PostgreSQL, in every process (LISTEN/NOTIFY).
    job_events = providers.Selector(
        profile,
        sql=providers.Resource(sql.job_events, settings.provided.resolved_database_url),
        test=providers.Singleton(LocalJobEvents),
    )
    uow_factory = providers.Selector(
        profile,
        sql=providers.Singleton(sql.unit_of_work, sessions, job_events),
        test=providers.Singleton(InMemoryUnitOfWorkFactory, memory_jobs, job_events),
    )
    job_reader = providers.Selector(
        profile,
        sql=providers.Singleton(sql.job_reader, sessions),
        test=providers.Singleton(InMemoryJobReader, memory_jobs),
    )
    owner_options = providers.Selector(  # A1111's /sdapi/v1/options, per owner
        profile,
        sql=providers.Singleton(sql.owner_options, sessions, clock),
        test=providers.Singleton(InMemoryOwnerOptions),
    )
    worker_registry = providers.Selector(  # the processes that run jobs (atelier cluster status)
        profile,
        sql=providers.Singleton(sql.worker_registry, sessions),
        test=providers.Singleton(InMemoryWorkerRegistry),
    )
    training_jobs = providers.Selector(
        profile,
        sql=providers.Singleton(training.sql_store, sessions),
        test=providers.Singleton(InMemoryTrainingJobStore),
    )

    # -- image generation ----------------------------------------------------------------------
    catalog = providers.Selector(
        profile,
        sql=providers.Singleton(generation.model_catalog, settings),
        test=providers.Singleton(generation.test_catalog),
    )
    depth_estimator = providers.Singleton(generation.depth_estimator)
    generator = providers.Selector(
        profile,
        sql=providers.Resource(generation.diffusers_generator, settings, depth_estimator),
        test=providers.Singleton(PatternImageGenerator),
    )
    control_preprocessor = providers.Singleton(generation.control_preprocessor, depth_estimator)
    images = providers.Singleton(FileImageStore, settings.provided.images_dir)
    codec = providers.Singleton(generation.image_codec)
    fetcher = providers.Singleton(generation.image_fetcher, settings)
    scene_reader = providers.Singleton(generation.scene_reader)
    demo_models = providers.Singleton(generation.demo_models)
    documents = providers.Singleton(knowledge.document_reader, settings)
    # This process's id in the worker registry, recorded on the jobs it runs, and the names of the models it holds
    # (the library sets both).
    worker_id: providers.Object[str | None] = providers.Object(None)
    loaded_models: providers.Object[Callable[[], list[str]]] = providers.Object(list)
    remote_worker: providers.Object[type | None] = providers.Object(None)  # the Ray actor's class
    claim_jobs = providers.Factory(
        ClaimJobs,
        uow_factory,
        job_reader,
        clock,
        worker_registry,
        settings.provided.worker_heartbeat,
        worker_id,
        settings.provided.model_switch_after,
    )
    executor = providers.Selector(
        providers.Callable(lambda s: s.executor, settings),
        threads=providers.Singleton(
            ThreadJobExecutor,
            workers=settings.provided.workers,
            batch_window=settings.provided.batch_window,
            max_batch=settings.provided.max_batch,
        ),
        queue=providers.Singleton(generation.queue_executor, claim_jobs.provider, loaded_models, settings, job_events),
        ray=providers.Singleton(generation.ray_executor, settings, remote_worker),
    )

    job_callbacks = providers.Resource(generation.job_callbacks, settings)
    resolve_images = providers.Factory(ResolveImages, images, fetcher, codec, job_reader)
    submit_generation = providers.Factory(
        SubmitGeneration,
        uow_factory,
        catalog,
        images,
        executor,
        clock,
        max_queued=settings.provided.max_queued_jobs,
        max_work=settings.provided.max_job_work,
        callbacks=job_callbacks,
    )
    job_metrics = providers.Singleton(
        generation.job_metrics,
        job_reader,
        executor.provided.live_workers,
        worker_registry,
        settings.provided.worker_heartbeat,
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
        metrics=job_metrics,
        callbacks=job_callbacks,
        worker_id=worker_id,
    )
    accept_generation = providers.Factory(
        AcceptGeneration, resolve_images, submit_generation, settings.provided.default_model
    )
    await_job = providers.Factory(AwaitJob, executor, job_reader)
    cancel_job = providers.Factory(CancelJob, uow_factory, executor, clock, job_callbacks)
    delete_job = providers.Factory(DeleteJob, uow_factory, images, executor)
    prune_jobs = providers.Factory(PruneJobs, uow_factory, images, clock)
    recover_jobs = providers.Factory(
        RecoverJobs,
        uow_factory,
        clock,
        worker_registry,
        settings.provided.worker_heartbeat,
        gone=process_gone,
        trainings=training_jobs,
    )
    render_prompts = providers.Factory(  # a turn's candidates and scored prompts, rendered as ordinary jobs
        RenderPrompts, submit_generation, await_job, cancel_job, images, timeout=settings.provided.job_time_budget
    )
    preview_control_map = providers.Factory(PreviewControlMap, control_preprocessor)
    read_scene = providers.Factory(ReadScene, scene_reader)
    register_demo_models = providers.Factory(RegisterDemoModels, catalog, demo_models, settings.provided.models_dir)

    # -- knowledge queries ---------------------------------------------------------------------
    llm = providers.Resource(knowledge.language_model, settings, catalog)
    embedder = providers.Singleton(knowledge.embedder, settings)
    word_frequency = providers.Singleton(knowledge.word_frequency)
    knowledge_index = providers.Resource(knowledge.knowledge_index, settings, embedder, word_frequency)
    lexicon = providers.Singleton(knowledge.lexicon, settings.provided.wordnet_dir)
    detector = providers.Singleton(knowledge.detector)
    state_probe = providers.Singleton(knowledge.detector, STATE_PROBE_L2)
    knowledge_queries = providers.Selector(
        profile,
        sql=providers.Singleton(sql.query_store, sessions),
        test=providers.Singleton(InMemoryKnowledgeQueryStore),
    )
    calibrations = providers.Selector(
        profile,
        sql=providers.Singleton(sql.calibration_store, sessions),
        test=providers.Singleton(InMemoryCalibrationStore),
    )

    # -- model edits ---------------------------------------------------------------------------
    edit_log = providers.Selector(
        profile,
        sql=providers.Singleton(sql.edit_log, sessions),
        test=providers.Singleton(InMemoryEditLog),
    )
    editor_pool = providers.Singleton(edits.editor_pool, llm, settings.provided.data_dir)
    edit_evaluator = providers.Singleton(edits.edit_evaluator, llm, False)
    protocol_evaluator = providers.Singleton(edits.edit_evaluator, llm, True)
    restore_edits = providers.Factory(RestoreEdits, editor_pool, edit_log)
    apply_edit = providers.Factory(ApplyEdit, editor_pool, edit_log, edit_evaluator, clock)
    rollback_edits = providers.Factory(RollbackEdits, editor_pool, edit_log, clock)
    evaluate_editor = providers.Factory(EvaluateEditor, editor_pool, edit_log, protocol_evaluator)
    read_edit_log = providers.Factory(ReadEditLog, edit_log, llm)
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
        retriever=settings.provided.knowledge_retriever,
        reading=settings.provided.knowledge_reading,
        context_units=settings.provided.knowledge_context_units,
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
        restore=restore_edits,
    )
    ingest_documents = providers.Factory(IngestDocuments, embedder, knowledge_index)
    list_documents = providers.Factory(ListDocuments, knowledge_index)
    delete_document = providers.Factory(DeleteDocument, knowledge_index)
    # The same model served to chat and completion clients, concurrent requests decoding together; as edited now,
    # or (NAME@base) with the edits off.
    text_generator = providers.Resource(knowledge.text_generator, llm, editor_pool, job_metrics)
    # Other registered language models, loaded when a request names one (never edited).
    text_models = providers.Resource(knowledge.text_models, settings, job_metrics)
    complete_text = providers.Factory(
        CompleteText,
        text_generator.provider,
        providers.Callable(knowledge.llm_aliases, settings),
        restore=restore_edits.provider,  # run before each request: the model as the edit log says
        catalog=catalog,
        others=text_models.provider,
        default_name=providers.Callable(knowledge.llm_name, settings, catalog),
        ask=ask_question.provider,
    )

    # -- training jobs -------------------------------------------------------------------------
    files = providers.Singleton(training.files, settings)
    base_models = providers.Singleton(training.base_models, settings, catalog)
    training_wake = providers.Singleton(threading.Event)  # set by a submission: this process's trainer looks now
    submit_training = providers.Factory(
        SubmitTraining, training_jobs, files, catalog, base_models, clock, wake=training_wake.provided.set
    )
    run_training = providers.Factory(
        RunTraining,
        training_jobs,
        files,
        catalog,
        base_models,
        providers.Object(training.trainer),
        clock,
        work_root=providers.Callable(lambda s: str(Path(s.data_dir) / "training" / "jobs"), settings),
        results_root=providers.Callable(lambda s: str(Path(s.models_dir) / "trained"), settings),
    )

    # -- prompt sessions -----------------------------------------------------------------------
    prompt_sessions = providers.Selector(
        profile,
        sql=providers.Singleton(sql.prompt_sessions, sessions),
        test=providers.Singleton(InMemoryPromptSessionStore),
    )
    prompt_rewriter = providers.Singleton(prompts.prompt_rewriter, settings)
    prompt_rewards = providers.Singleton(prompts.prompt_rewards, settings, scene_reader)
    start_session = providers.Factory(StartSession, prompt_sessions, catalog, clock, settings.provided.default_model)
    keep_as_input = providers.Factory(KeepAsInput, images, codec)  # an edit turn's current image, as an upload
    take_turn = providers.Factory(
        TakeTurn,
        prompt_sessions,
        prompt_rewriter,
        prompt_rewards,
        render_prompts,
        clock,
        catalog=catalog,
        inputs=keep_as_input,
        edit_model=settings.provided.edit_model,
    )
    score_prompts = providers.Factory(ScorePrompts, render_prompts, prompt_rewards)
    choose_candidate = providers.Factory(ChooseCandidate, prompt_sessions, clock)
    move_head = providers.Factory(MoveHead, prompt_sessions, clock)
