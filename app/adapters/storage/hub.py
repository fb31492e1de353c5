"""Model hub downloads, for deployments that have a network."""

from __future__ import annotations

from app.domain.errors import ModelUnavailable

# What a diffusers text-to-image folder or a transformers language model (with its chat template) needs; skips
# duplicate fp16/ckpt/onnx/flax files.
_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "*.bin", "*.py", "*.jinja", "*.tiktoken"]
_SKIP = ["*.ckpt", "*fp16*", "*onnx*", "*flax*", "*.msgpack", "*ema*"]


def download_from_hub(repo_id: str, cache_dir: str) -> str:
    """Fetch a model repository into ``cache_dir`` and return its local folder."""
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(repo_id, cache_dir=cache_dir, allow_patterns=_PATTERNS, ignore_patterns=_SKIP))
    except Exception as e:
        raise ModelUnavailable(
            f"Could not fetch {repo_id!r} from the model hub ({type(e).__name__}). "
            "Without a network, download the model elsewhere and register its folder: atelier models add NAME /path"
        ) from e
