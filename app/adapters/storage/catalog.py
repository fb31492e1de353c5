"""The model registry: a JSON file in the data directory."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.domain.errors import InvalidParameters, ModelAlreadyRegistered, UnknownModel
from app.domain.families import Family
from app.domain.models import ModelInfo, ModelKind
from app.domain.specs import validate_model_name
from app.ports.generation import ModelCatalog

Inspector = Callable[[str, str], dict[str, Any]]
Downloader = Callable[[str, str], str]
Converter = Callable[[str, str, str | None], str]
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class JsonModelCatalog(ModelCatalog):
    """``<data dir>/models.json``: name -> kind, folder or file, source, native size, tokenizer kind, family,
    and what ``app.usecases.lora_fit`` compares: the family a LoRA was made for (``made_for``) and the hashed
    layers of a LoRA or a base model's denoiser (``layers``, base64 of sorted 32-bit hashes).

    ``inspector(path, kind)`` reads a diffusers folder or LoRA file (and rejects anything else);
    ``downloader(hub_id, cache_dir)`` fetches a hub id when a network exists;
    ``converter(file, out_dir, config_dir)`` turns a single-file checkpoint into a diffusers folder at
    ``<data dir>/models/converted/<name>``, with the configs of ``config_dir`` (by default the folder of
    the registered base model ``default_model``); ``vae_converter`` does the same for a VAE file (A1111's
    ``.safetensors``/``.pt`` VAEs), with the config folder's ``vae`` as the architecture; ``gguf_converter``
    turns a language model's GGUF file (llama.cpp's format) into a transformers folder the same way.
    """

    def __init__(
        self,
        data_dir: str,
        inspector: Inspector,
        downloader: Downloader,
        converter: Converter | None = None,
        default_model: str | None = "demo",
        vae_converter: Converter | None = None,
        gguf_converter: Converter | None = None,
    ) -> None:
        self._file = Path(data_dir) / "models.json"
        self._cached: tuple[tuple[int, int, int] | None, dict[str, dict[str, Any]]] = (None, {})
        self._hub_cache = str(Path(data_dir) / "hub")
        self._converted = Path(data_dir) / "models" / "converted"
        self._inspect = inspector
        self._download = downloader
        self._convert = converter
        self._convert_vae = vae_converter
        self._convert_gguf = gguf_converter
        self._default_model = default_model
        self._lock = threading.Lock()

    def get(self, name: str, kind: ModelKind = ModelKind.BASE) -> ModelInfo:
        entry = self._read().get(name)
        if entry is None or entry.get("kind", "base") != kind.value:
            hint = " Run `atelier models init-demo` to create the built-in demo model." if name == "demo" else ""
            what = "model" if kind is ModelKind.BASE else kind.value
            register = f" Register one with `atelier models add {name} PATH --kind {kind.value}`."
            raise UnknownModel(f"No {what} named {name!r} is registered.{hint or register}")
        return _to_info(name, entry)

    def list(self, kind: ModelKind | None = None) -> list[ModelInfo]:
        infos = [_to_info(name, entry) for name, entry in sorted(self._read().items())]
        return [info for info in infos if kind is None or info.kind is kind]

    def add(
        self,
        name: str,
        source: str,
        *,
        kind: ModelKind = ModelKind.BASE,
        replace: bool = False,
        config: str | None = None,
    ) -> ModelInfo:
        """``config`` (a registered base model or a diffusers folder) only matters for a checkpoint or VAE file."""
        validate_model_name(name)
        if not source or not isinstance(source, str):
            raise InvalidParameters("Give a local folder or file, or a hub id.", code="invalid_source", field="path")
        local = Path(source).expanduser()
        single = local.is_file() and local.suffix.lower() in CHECKPOINT_SUFFIXES
        convert = {ModelKind.BASE: self._convert, ModelKind.VAE: self._convert_vae}.get(kind) if single else None
        gguf = kind is ModelKind.LLM and local.is_file() and local.suffix.lower() == ".gguf"
        if local.is_dir() or (kind is ModelKind.LORA and local.is_file()):
            path = str(local.resolve())
        elif gguf:
            if self._convert_gguf is None:
                raise InvalidParameters("This registry cannot convert GGUF files.", code="invalid_source", field="path")
            if name in self._read() and not replace:
                raise ModelAlreadyRegistered(f"A model named {name!r} is already registered; pass replace.")
            path = self._convert_gguf(str(local.resolve()), str(self._converted / name), None)
        elif convert is not None:
            if name in self._read() and not replace:  # before the (slow) conversion overwrites its folder
                raise ModelAlreadyRegistered(f"A model named {name!r} is already registered; pass replace.")
            path = convert(str(local.resolve()), str(self._converted / name), self._config_dir(config))
        elif HUB_ID.match(source) and not local.exists():
            path = self._download(source, self._hub_cache)
        else:
            raise InvalidParameters(
                f"{source!r} is neither a local folder nor a hub id like 'org/model'.",
                code="invalid_source",
                field="path",
            )
        details = self._inspect(path, kind.value)
        info = ModelInfo(
            name=name,
            path=path,
            source=source,
            kind=kind,
            default_size=int(details.get("default_size", 512)),
            tokenizer=str(details.get("tokenizer", "unknown")),
            registered_at=datetime.now(UTC),
            default_guidance=_guidance(details.get("default_guidance")),
            sha256=details.get("sha256"),
            family=Family(details.get("family", Family.SD.value)),
            default_steps=_steps(details.get("default_steps")),
            made_for=_family(details.get("made_for")),
            layers=_layers(details.get("layers")),
            latent=details.get("latent"),
            context_length=_steps(details.get("context_length")),
            architecture=_text(details.get("architecture")),
            base_model=_text(details.get("base_model")),
        )
        with self._lock:
            entries = self._read()
            if name in entries and not replace:
                raise ModelAlreadyRegistered(
                    f"A model named {name!r} is already registered; pass replace to overwrite."
                )
            entries[name] = _to_entry(info)
            self._write(entries)
        return info

    def remove(self, name: str) -> ModelInfo:
        with self._lock:
            entries = self._read()
            if name not in entries:
                raise UnknownModel(f"No model named {name!r} is registered.")
            info = _to_info(name, entries.pop(name))
            self._write(entries)
        made = Path(info.path)
        if made.is_relative_to(self._converted.resolve()) and made.is_dir():  # converted for this name alone
            shutil.rmtree(made, ignore_errors=True)
        return info

    def _config_dir(self, config: str | None) -> str:
        """The diffusers folder whose configs convert a checkpoint: a registered base model's, else a folder."""
        name = config or self._default_model
        entry = self._read().get(name) if name else None
        if entry is not None and entry.get("kind", "base") == ModelKind.BASE.value:
            return str(entry["path"])
        if config and Path(config).expanduser().is_dir():
            return str(Path(config).expanduser().resolve())
        if config:
            what = f"--config {config!r} is neither a registered base model nor a folder"
        else:
            what = f"No --config was given and the default model {name!r} is not registered"
        raise InvalidParameters(
            f"{what}. A single-file checkpoint is converted with the configs and tokenizer of a diffusers folder "
            "of the same architecture: pass --config with one (e.g. the SD-1.5 or PAI-Diffusion folder) or with "
            "the name of a registered base model.",
            code="invalid_config",
            field="config",
        )

    def _read(self) -> dict[str, dict[str, Any]]:
        """The registry, parsed again only when the file changed (a submission and its run look
        models up several times; another process may register models meanwhile)."""
        try:
            stat = self._file.stat()
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if stamp != self._cached[0]:
                data = json.loads(self._file.read_text(encoding="utf-8"))
                self._cached = (stamp, dict(data.get("models", {})))
        except FileNotFoundError:
            return {}
        return dict(self._cached[1])

    def _write(self, entries: dict[str, dict[str, Any]]) -> None:
        self._file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._file.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"version": 1, "models": entries}, handle, ensure_ascii=False, indent=2)
        os.replace(tmp, self._file)


def _to_entry(info: ModelInfo) -> dict[str, Any]:
    return {
        "path": info.path,
        "source": info.source,
        "kind": info.kind.value,
        "default_size": info.default_size,
        "tokenizer": info.tokenizer,
        "registered_at": info.registered_at.isoformat() if info.registered_at else None,
        "default_guidance": info.default_guidance,
        "sha256": info.sha256,
        "family": info.family.value,
        "default_steps": info.default_steps,
        "made_for": info.made_for.value if info.made_for else None,
        "layers": encode_layers(info.layers),
        "latent": info.latent,
        "context_length": info.context_length,
        "architecture": info.architecture,
        "base_model": info.base_model,
    }


def _to_info(name: str, entry: dict[str, Any]) -> ModelInfo:
    registered = entry.get("registered_at")
    return ModelInfo(
        name=name,
        path=entry["path"],
        source=entry.get("source", entry["path"]),
        kind=ModelKind(entry.get("kind", "base")),
        default_size=int(entry.get("default_size", 512)),
        tokenizer=entry.get("tokenizer", "unknown"),
        registered_at=datetime.fromisoformat(registered) if registered else None,
        default_guidance=_guidance(entry.get("default_guidance")),
        sha256=entry.get("sha256"),
        family=Family(entry.get("family", Family.SD.value)),
        default_steps=_steps(entry.get("default_steps")),
        made_for=_family(entry.get("made_for")),
        layers=decode_layers(entry.get("layers")),
        latent=entry["latent"] if isinstance(entry.get("latent"), str) else None,
        context_length=_steps(entry.get("context_length")),
        architecture=_text(entry.get("architecture")),
        base_model=_text(entry.get("base_model")),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _steps(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _guidance(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _family(value: Any) -> Family | None:
    try:
        return Family(value) if value else None
    except ValueError:  # a family this version does not know
        return None


def _layers(value: Any) -> frozenset[int] | None:
    if value is None or isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        return None
    return frozenset(int(v) for v in value)


def encode_layers(layers: frozenset[int] | None) -> str | None:
    """Hashed layers as the catalog keeps them: base64 of the sorted 32-bit hashes (~4 kB for an SDXL UNet)."""
    if layers is None:
        return None
    return base64.b64encode(b"".join(h.to_bytes(4, "big") for h in sorted(layers))).decode("ascii")


def decode_layers(text: Any) -> frozenset[int] | None:
    """The inverse of :func:`encode_layers`; None for a missing or damaged entry (no structural check then)."""
    if not isinstance(text, str):
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(data) % 4:
        return None
    return frozenset(int.from_bytes(data[i : i + 4], "big") for i in range(0, len(data), 4))
