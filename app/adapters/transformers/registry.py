"""What the model registry reads of a language model or an LLM adapter, and GGUF files turned into folders.

A language model is a transformers folder whose config is a causal LM (``LlamaForCausalLM``, ``Qwen2ForCausalLM``,
...) with its tokenizer; an adapter is a PEFT LoRA folder (``adapter_config.json`` and its weights). Both are read
at registration, so a folder that cannot serve is refused then and not at a request.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from app.domain.errors import InvalidParameters

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def _refuse(message: str) -> InvalidParameters:
    return InvalidParameters(message, code="invalid_model", field="path")


def inspect_llm(path: str) -> dict[str, Any]:
    """Context length, architecture and tokenizer class of a causal LM folder; refuses anything else."""
    import transformers.utils.logging
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    library_logging: Any = transformers.utils.logging  # untyped for mypy
    library_logging.set_verbosity_error()
    if not (Path(path) / "config.json").is_file():
        raise _refuse("A language model is a transformers folder with a config.json (or a .gguf file).")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise _refuse(f"The folder's config.json cannot be read as a transformers model: {e}") from e
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise _refuse(
            f"The folder holds a {config.model_type!r} model, which is not a causal language model "
            "(for an image model, leave --kind out)."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise _refuse(f"The folder has no tokenizer that loads: {e}") from e
    architectures = getattr(config, "architectures", None) or [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config.model_type]]
    context = next(
        (
            value
            for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
            if isinstance(value := getattr(config, key, None), int) and value > 0
        ),
        None,
    )
    return {"context_length": context, "architecture": str(architectures[0]), "tokenizer": type(tokenizer).__name__}


def inspect_llm_adapter(path: str) -> dict[str, Any]:
    """The model a PEFT LoRA adapter was trained on, its rank and the layers it changes; refuses other adapters."""
    folder = Path(path)
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise _refuse("An LLM adapter is a PEFT folder with an adapter_config.json and its weights.") from e
    except (OSError, ValueError) as e:
        raise _refuse(f"The adapter's adapter_config.json cannot be read: {e}") from e
    if not isinstance(config, dict) or str(config.get("peft_type", "")).upper() != "LORA":
        raise _refuse(f"Only LoRA adapters are served; this one is {config.get('peft_type')!r}.")
    weights = next((folder / name for name in ADAPTER_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        raise _refuse(f"The adapter folder has no weights ({' or '.join(ADAPTER_WEIGHTS)}).")
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="pt") as handle:
                keys = list(handle.keys())
        except Exception as e:  # a damaged header raises the library's own error types
            raise _refuse(f"The adapter's weights cannot be read: {type(e).__name__}.") from e
        if not any("lora_A" in key for key in keys):
            raise _refuse("The adapter's weights hold no LoRA matrices.")
    targets = config.get("target_modules")
    target_text = ",".join(sorted(targets)) if isinstance(targets, list) else str(targets or "")
    return {
        "base_model": str(config.get("base_model_name_or_path") or "") or None,
        "architecture": f"lora r={config.get('r', '?')} ({target_text})" if target_text else "lora",
        "tokenizer": "-",
    }


def convert_gguf(path: str, out_dir: str, config_dir: str | None = None) -> str:
    """A GGUF language model (llama.cpp's format; quantized weights are de-quantized to fp32) as a transformers
    safetensors folder at ``out_dir``, built aside and moved in place, so an interrupted conversion leaves nothing.
    ``config_dir`` is unused: a GGUF file carries its config and tokenizer."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise InvalidParameters("Converting a GGUF file needs the gguf package: pip install gguf", field="path")
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    building.chmod(0o755)  # mkdtemp makes it private; the folder is an ordinary model folder
    try:
        try:
            save_gguf_as_folder(os.path.dirname(path), os.path.basename(path), building)
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as e:
            raise _refuse(f"The GGUF file cannot be converted: {e}") from e
        shutil.rmtree(target, ignore_errors=True)
        os.replace(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return str(target)


def save_gguf_as_folder(gguf_dir: str, gguf_file: str, out: Path) -> None:
    """Load ``gguf_file`` through transformers and save it as a plain model of its architecture: transformers
    refuses to save a GGUF-loaded model, so its weights move into a model built from the same config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    config: Any = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    auto: Any = AutoModelForCausalLM  # untyped for mypy
    model = auto.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
