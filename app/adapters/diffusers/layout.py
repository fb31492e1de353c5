"""Read what a local diffusers folder is without loading it (no torch, no diffusers)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from app.adapters.diffusers.families import CONTROLNETS, controlnet_family, family_of_class
from app.domain.errors import ModelUnavailable
from app.domain.families import Family, profile, supported_families

FALLBACK_SIZE = 512
_TOKENIZER_KINDS = {"BertTokenizer": "bert", "BertTokenizerFast": "bert", "CLIPTokenizer": "clip"}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _vae_factor(vae: dict[str, Any]) -> int | None:
    """How many pixels a latent cell covers, per side, from the VAE's config."""
    for key, extra in (("block_out_channels", -1), ("encoder_block_out_channels", -1), ("temperal_downsample", 0)):
        blocks = vae.get(key)
        if isinstance(blocks, list) and blocks:
            return 1 << (len(blocks) + extra)  # each block past the first halves the size (Qwen's: each one)
    return None


def latent_space(vae: dict[str, Any]) -> str | None:
    """A VAE config's latent space as ``Class:channels:factor`` (``AutoencoderKL:4:8``), None when unreadable."""
    name = vae.get("_class_name")
    channels = vae.get("latent_channels", vae.get("z_dim"))
    factor = _vae_factor(vae)
    if not isinstance(name, str) or not isinstance(channels, int) or factor is None:
        return None
    return f"{name}:{channels}:{factor}"


def vae_folder(path: str) -> Path:
    """The folder of a VAE given as an autoencoder's diffusers folder or as a pipeline folder (its ``vae/``)."""
    root = Path(path)
    for folder in (root, root / "vae"):
        config = _read_json(folder / "config.json")
        if config is not None and str(config.get("_class_name", "")).startswith("Autoencoder"):
            return folder
    raise ModelUnavailable(
        f"{path} is not a VAE: expected a diffusers autoencoder folder (config.json naming an Autoencoder class), "
        "a pipeline folder with one in vae/, or a .safetensors/.pt/.ckpt VAE file."
    )


def inspect_vae(path: str) -> dict[str, Any]:
    """A VAE's folder, class and latent space (what a base model's must equal for it to fit)."""
    folder = vae_folder(path)
    config = _read_json(folder / "config.json") or {}
    return {
        "default_size": FALLBACK_SIZE,
        "tokenizer": "none",
        "pipeline": str(config["_class_name"]),
        "latent": latent_space(config),
        "folder": str(folder),
    }


def _default_size(root: Path, family: Family) -> int:
    """The native size: the denoiser's sample size in latent cells times the VAE's factor, else the
    family's recommended size."""
    denoiser = _read_json(root / "unet" / "config.json") or _read_json(root / "transformer" / "config.json") or {}
    factor = _vae_factor(_read_json(root / "vae" / "config.json") or {})
    sample_size = denoiser.get("sample_size")
    if isinstance(sample_size, (list, tuple)) and sample_size:
        sample_size = sample_size[0]
    if not isinstance(sample_size, int) or isinstance(sample_size, bool) or factor is None:
        return profile(family).size
    return sample_size * factor


def _family(root: Path, index: dict[str, Any]) -> Family:
    """The family the folder's pipeline class belongs to; an SDXL image-to-image folder without its first
    text encoder is the refiner."""
    name = index.get("_class_name")
    family = family_of_class(name) if isinstance(name, str) else None
    if family is None:
        raise ModelUnavailable(
            f"{root} holds a {name or 'unnamed'} pipeline, which Atelier does not serve. "
            f"Supported families: {supported_families()}."
        )
    if family is Family.SDXL and _component(index.get("text_encoder")) is None:
        return Family.SDXL_REFINER
    return family


def _component(entry: Any) -> str | None:
    """The class of a model_index.json component entry ([library, class]; [null, null] when absent)."""
    return entry[1] if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str) else None


def _tokenizer_kind(entry: Any) -> str:
    name = _component(entry)
    if name is None:
        return "unknown"
    if name in _TOKENIZER_KINDS:
        return _TOKENIZER_KINDS[name]
    return name.removesuffix("Fast").removesuffix("Tokenizer").lower() or "unknown"


def inspect_model(path: str) -> dict[str, Any]:
    """Describe a diffusers folder: ``family``, ``default_size`` (native pixels), ``tokenizer`` kind, ``pipeline``
    class, and the recommended ``default_guidance``/``default_steps`` where its marker states them.

    Raises ``ModelUnavailable`` when ``path`` has no readable ``model_index.json`` or holds a pipeline of a
    family Atelier does not serve (the message names the supported ones).
    """
    root = Path(path)
    index_file = root / "model_index.json"
    if not index_file.is_file():
        raise ModelUnavailable(f"{path} is not a diffusers model folder: it has no model_index.json.")
    index = _read_json(index_file)
    if index is None:
        raise ModelUnavailable(f"{index_file} is not a readable JSON object.")
    pipeline = index.get("_class_name")
    family = _family(root, index)
    described: dict[str, Any] = {
        "default_size": _default_size(root, family),
        "tokenizer": _tokenizer_kind(index.get("tokenizer") or index.get("tokenizer_2")),
        "pipeline": pipeline if isinstance(pipeline, str) else "unknown",
        "family": family.value,
        "latent": latent_space(_read_json(root / "vae" / "config.json") or {}),
    }
    recommended = _recommended(root)
    for key, name in (("guidance_scale", "default_guidance"), ("steps", "default_steps"), ("size", "default_size")):
        if key in recommended:
            described[name] = recommended[key]
    return described


def _recommended(root: Path) -> dict[str, Any]:
    """``recommended`` values of an ``atelier-demo.json`` marker: ``guidance_scale``, ``steps`` and ``size``
    (the demo world's models state them: the trained ``demo`` is best at 3.0, where A1111's 7.5
    over-amplifies the prompt; the tiny test models of other families state the size they were built for)."""
    marker = _read_json(root / "atelier-demo.json") or {}
    recommended = marker.get("recommended")
    if not isinstance(recommended, dict):
        return {}
    found: dict[str, Any] = {}
    value = recommended.get("guidance_scale")
    if isinstance(value, int | float) and not isinstance(value, bool):
        found["guidance_scale"] = float(value)
    for key in ("steps", "size"):
        value = recommended.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            found[key] = value
    return found


LORA_FILES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")
LORA_SUFFIXES = (".safetensors", ".bin", ".pt")


def lora_file(path: str) -> Path:
    """The weights file of a LoRA given as a file or as a folder holding ``pytorch_lora_weights.*``."""
    root = Path(path)
    if root.is_file() and root.suffix in LORA_SUFFIXES:
        return root
    for name in LORA_FILES:
        if (root / name).is_file():
            return root / name
    candidates = sorted(p for p in root.glob("*") if p.suffix in LORA_SUFFIXES) if root.is_dir() else []
    if len(candidates) == 1:
        return candidates[0]
    raise ModelUnavailable(f"{path} is not a LoRA: expected a .safetensors/.bin file or a folder with one.")


def inspect_controlnet(path: str) -> dict[str, Any]:
    """A diffusers ControlNet folder: ``config.json`` naming a ControlNet class, and the family it was made for."""
    config = _read_json(Path(path) / "config.json")
    family = controlnet_family(config) if config is not None else None
    if config is None or family is None:
        classes = ", ".join(sorted({single for single, _ in CONTROLNETS.values()}))
        raise ModelUnavailable(f"{path} is not a diffusers ControlNet folder (config.json naming one of: {classes}).")
    return {
        "default_size": FALLBACK_SIZE,
        "tokenizer": "none",
        "pipeline": str(config["_class_name"]),
        "family": family.value,
    }


def inspect(path: str, kind: str) -> dict[str, Any]:
    """Describe a folder or file registered as ``kind`` (``base``, ``lora``, ``controlnet`` or ``vae``). A LoRA's
    description and a base model's ``layers`` are what :mod:`app.usecases.lora_fit` compares at submission."""
    if kind == "lora":
        file = lora_file(path)
        return {"default_size": 0, "tokenizer": "none", "pipeline": "lora", "file": str(file), **inspect_lora(file)}
    if kind == "controlnet":
        return inspect_controlnet(path)
    if kind == "vae":
        return inspect_vae(path)
    described = inspect_model(path)
    described["layers"] = denoiser_layers(path)
    return described


# --- what a LoRA was made for, and whether it fits a base model ----------------------------------------------
#
# A LoRA fits a base model when every layer it changes is a layer of the model's denoiser (UNet or transformer)
# with the same input and output sizes; diffusers refuses the others (a size mismatch) or loads them partly.
# Both sides are read from safetensors headers at registration, without loading a tensor: the base model's every
# Linear and Conv weight (``name.weight``, [out, in, ...]), the LoRA's down/A and up/B pairs ([rank, in, ...],
# [out, rank, ...]). Each layer is recorded as a 32-bit hash of ``name:in:out`` (dots and underscores alike, so
# kohya's flattened names meet diffusers' dotted ones): an SDXL UNet has ~800, about 4 kB in the catalog, and a
# layer that is not there passes for one of them with odds of about 1 in 5 million.
# Names in the original models' own layout (kohya's SDXL ``input_blocks``, FLUX ``double_blocks``) cannot be
# compared with a diffusers folder's and leave ``layers`` unknown; the family read from the file (metadata,
# names, widths) is then compared instead.

LAYER_WEIGHT_DIMS = (2, 4)  # Linear and Conv2d weights: the layers a LoRA can change
_LORA_SIDES = (
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora_linear_layer.down.weight", "down"),
    (".lora_linear_layer.up.weight", "up"),
)
_PROCESSOR = re.compile(r"(?P<module>.+)\.processor\.(?P<proj>to_q|to_k|to_v|to_out)_lora\.(?P<side>down|up)\.weight")
_PEFT_NAMED = re.compile(r"(?P<module>.+)\.lora_(?P<side>[AB])\.[^.]+\.weight")
_TEXT_PREFIXES = ("text_encoder.", "text_encoder_2.", "text_encoder_3.", "lora_te_", "lora_te1_", "lora_te2_")
_DENOISER_PREFIXES = {"unet.": "unet", "transformer.": "transformer", "lora_unet_": "unet"}
_DENOISER_PREFIXES |= {"lora_transformer_": "transformer"}
_UNET_ROOTS = ("down_blocks.", "mid_block.", "up_blocks.")  # unprefixed UNet keys (2023 attention processors)
# Flattened names in an original model's layout, not a diffusers folder's.
_ORIGINAL_NAMES = ("input_blocks_", "middle_block_", "output_blocks_", "double_blocks_", "single_blocks_",
                   "joint_blocks_", "diffusion_model_", "final_layer_")  # fmt: skip
# Metadata kohya and the model-spec convention write: ``modelspec.architecture``, ``ss_base_model_version``.
_ARCHITECTURES = (
    ("xl-v1-refiner", Family.SDXL_REFINER),
    ("xl_refiner", Family.SDXL_REFINER),
    ("stable-diffusion-xl", Family.SDXL),
    ("sdxl", Family.SDXL),
    ("stable-diffusion-3", Family.SD3),
    ("sd3", Family.SD3),
    ("stable-diffusion-v", Family.SD),
    ("sd_v", Family.SD),
    ("sd_2", Family.SD),
    ("sd_1", Family.SD),
    ("flux", Family.FLUX),
    ("qwen-image-edit", Family.QWEN_IMAGE_EDIT),
    ("qwen", Family.QWEN_IMAGE),
    ("z-image", Family.Z_IMAGE),
    ("kolors", Family.KOLORS),
    ("sana", Family.SANA),
    ("cogview4", Family.COGVIEW4),
    ("hunyuan", Family.HUNYUANDIT),
)
# Real models' widths: the cross-attention input of a UNet, the hidden width of an MMDiT.
_UNET_CONTEXT = {768: Family.SD, 1024: Family.SD, 2048: Family.SDXL, 1280: Family.SDXL_REFINER}
_MMDIT_WIDTH = {1536: Family.SD3, 2432: Family.SD3}


def layer_hash(name: str, fan_in: int, fan_out: int) -> int:
    """The 32-bit hash a layer is recorded as: its name with dots as underscores, and its sizes."""
    text = f"{name.replace('.', '_')}:{fan_in}:{fan_out}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


def safetensors_header(path: str | Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """The shapes of a ``.safetensors`` file's tensors and its metadata, read from its header alone."""
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if not 2 <= size <= 100 * 2**20:
            raise ValueError(f"{path} has no safetensors header")
        header = json.loads(handle.read(size))
    if not isinstance(header, dict):
        raise ValueError(f"{path} has no safetensors header")
    metadata = header.pop("__metadata__", None)
    shapes = {
        key: tuple(int(n) for n in entry["shape"])
        for key, entry in header.items()
        if isinstance(entry, dict) and isinstance(entry.get("shape"), list)
    }
    return shapes, {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}


def denoiser_layers(path: str) -> frozenset[int] | None:
    """The hashed layers (:func:`layer_hash`) of a model folder's UNet or transformer, from its safetensors
    headers; None when it has none (``.bin`` weights) or they cannot be read."""
    for subfolder in ("unet", "transformer"):
        files = sorted((Path(path) / subfolder).glob("*.safetensors"))
        if files:
            break
    else:
        return None
    layers = set()
    try:
        for file in files:
            shapes, _ = safetensors_header(file)
            for key, shape in shapes.items():
                if key.endswith(".weight") and len(shape) in LAYER_WEIGHT_DIMS:
                    layers.add(layer_hash(key.removesuffix(".weight"), shape[1], shape[0]))
    except (OSError, ValueError):
        return None
    return frozenset(layers)


def _lora_side(key: str) -> tuple[str, str] | None:
    """(module, ``down`` or ``up``) of a LoRA weight's key; None for other keys (alphas, DoRA magnitudes)."""
    for suffix, side in _LORA_SIDES:
        if key.endswith(suffix):
            return key.removesuffix(suffix), side
    if match := _PROCESSOR.fullmatch(key):
        proj = match["proj"] + (".0" if match["proj"] == "to_out" else "")
        return f"{match['module']}.{proj}", match["side"]
    if match := _PEFT_NAMED.fullmatch(key):
        return match["module"], "down" if match["side"] == "A" else "up"
    return None


def _denoiser_module(module: str) -> tuple[str, str] | None:
    """(flattened name in the denoiser, ``unet`` or ``transformer``) of a LoRA module; ("", "") for a text
    encoder's; None for a module of no known place."""
    if module.startswith(_TEXT_PREFIXES):
        return "", ""
    for prefix, origin in _DENOISER_PREFIXES.items():
        if module.startswith(prefix):
            return module.removeprefix(prefix).replace(".", "_"), origin
    if module.startswith(_UNET_ROOTS):
        return module.replace(".", "_"), "unet"
    return None


def _width(modules: dict[str, tuple[int, int]], pattern: str) -> int | None:
    widths = [fan_in for name, (fan_in, _) in modules.items() if re.search(pattern, name)]
    return max(widths) if widths else None


def lora_family(
    modules: dict[str, tuple[int, int]], origins: set[str], keys: list[str], metadata: dict[str, str]
) -> Family | None:
    """The family a LoRA was made for, where its metadata, layer names or real models' widths tell; else None.

    ``modules``: flattened denoiser layer -> (in, out); ``origins``: ``unet``/``transformer``; ``keys``: all."""
    stated = " ".join(metadata.get(k, "") for k in ("modelspec.architecture", "ss_base_model_version")).lower()
    for marker, family in _ARCHITECTURES:
        if marker in stated:
            return family
    names = " ".join(modules)
    if re.search(r"single_transformer_blocks_|double_blocks_|single_blocks_|guidance_embedder", names):
        return Family.FLUX
    if re.search(r"(img|txt)_(mlp|mod)", names):
        return Family.QWEN_IMAGE
    if re.search(r"noise_refiner_|context_refiner_|layers_\d+_attention_|feed_forward_w\d", names):
        return Family.Z_IMAGE
    if re.search(r"conv_inverted|conv_depth|conv_point", names):
        return Family.SANA
    if re.search(r"time_condition_embed|patch_embed_text_proj", names):
        return Family.COGVIEW4
    if re.search(r"(^| )blocks_\d+_attn[12]_|time_extra_emb", names):
        return Family.HUNYUANDIT
    if "transformer" in origins and re.search(r"add_[qkv]_proj|to_add_out|ff_context|norm1_context", names):
        return _MMDIT_WIDTH.get(_width(modules, r"attn_to_q$") or 0)  # SD3, else (FLUX's 3072: Qwen's too) unknown
    if "unet" not in origins:
        return None
    if any(k.startswith(("text_encoder_2.", "lora_te2_", "lora_te1_")) for k in keys):
        return Family.SDXL
    context = _UNET_CONTEXT.get(_width(modules, r"attn2_to_k$") or 0)
    if context is not None:
        return context
    if re.search(r"transformer_blocks_[1-9]|add_embedding", names):  # SD 1.x/2.x UNets are one block deep
        return Family.SDXL
    if re.search(r"down_blocks_0_attentions|up_blocks_3_attentions|input_blocks_[12]_1_", names):
        return Family.SD  # SDXL's outermost level has no attention
    if any(k.startswith("lora_te_") for k in keys):  # kohya's SD 1.x/2.x text encoder (SDXL's: lora_te1_/te2_)
        return Family.SD
    return None


def describe_lora(shapes: dict[str, tuple[int, ...]], metadata: dict[str, str]) -> dict[str, Any]:
    """``made_for`` (a family's value, or None) and ``layers`` (the hashed denoiser layers it changes, or None
    when some are named in a layout other than diffusers') of a LoRA's tensors, given by shape."""
    sides: dict[str, dict[str, tuple[int, ...]]] = {"down": {}, "up": {}}
    origins: set[str] = set()
    comparable = True
    for key, shape in shapes.items():
        found = _lora_side(key)
        place = _denoiser_module(found[0]) if found else None
        if found is None:
            continue
        if place is None:
            comparable = False
            continue
        name, origin = place
        if name:
            sides[found[1]][name] = shape
            origins.add(origin)
    modules = {
        name: (down[1], sides["up"][name][0])
        for name, down in sides["down"].items()
        if name in sides["up"] and len(down) >= 2
    }
    if not modules and not any(_lora_side(key) for key in shapes):
        comparable = False
    if any(name.startswith(_ORIGINAL_NAMES) for name in modules):
        comparable = False
    family = lora_family(modules, origins, list(shapes), metadata)
    layers = sorted({layer_hash(name, fan_in, fan_out) for name, (fan_in, fan_out) in modules.items()})
    return {"made_for": family.value if family else None, "layers": layers if comparable else None}


def inspect_lora(file: Path) -> dict[str, Any]:
    """:func:`describe_lora` of a LoRA file (a safetensors header, or a torch file's tensors); ``family`` is
    set too where the LoRA's is known. A file that cannot be read is described as unknown (the loader that
    reads it next says why)."""
    try:
        if file.suffix == ".safetensors":
            shapes, metadata = safetensors_header(file)
        else:
            from app.adapters.diffusers.lora import tensor_shapes

            shapes, metadata = tensor_shapes(file), {}
    except Exception:  # a broken file is refused by load_lora_state, with its own message
        return {"made_for": None, "layers": None}
    described = describe_lora(shapes, metadata)
    if described["made_for"]:
        described["family"] = described["made_for"]
    return described
