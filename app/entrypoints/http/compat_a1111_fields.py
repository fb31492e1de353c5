"""Which fields of an A1111 txt2img/img2img request Atelier does not honour, so the answer can say so.

A1111 clients send every field of its API, most with their default values. A field counts as ignored only when
it was sent with a value that would change A1111's result: not ``null``, ``false``, empty, nor its A1111 default
(or the default of the common clients, e.g. ``eta: 1``), and only when the switch it depends on is on
(``hr_scale`` changes nothing unless ``enable_hr`` is true, ``subseed`` nothing unless ``subseed_strength`` > 0).
"""

from __future__ import annotations

from typing import Any

TXT2IMG_HONOURED = frozenset(
    {
        "prompt",
        "negative_prompt",
        "seed",
        "sampler_name",
        "sampler_index",
        "scheduler",  # reported by the route when it cannot be combined with the sampler
        "batch_size",
        "n_iter",
        "steps",
        "cfg_scale",
        "width",
        "height",
        "send_images",
        "save_images",  # every result is kept (GET /v1/images/{id})
        "do_not_save_grid",  # no grid is ever made
        "override_settings",  # sd_model_checkpoint; its other keys are checked one by one
        "alwayson_scripts",  # every enabled ControlNet unit; other scripts are reported one by one
        "refiner_checkpoint",
        "refiner_switch_at",
        "enable_hr",
        "hr_scale",
        "hr_upscaler",
        "hr_second_pass_steps",
        "hr_resize_x",
        "hr_resize_y",
        "denoising_strength",  # txt2img: the hires pass's
    }
)
IMG2IMG_HONOURED = TXT2IMG_HONOURED | {"init_images", "mask", "resize_mode", "denoising_strength"}
_HONOURED_SETTINGS = frozenset({"sd_model_checkpoint", "CLIP_stop_at_last_layers", "sd_vae"})
_NEUTRAL: tuple[Any, ...] = (None, False, "", [], {})  # False == 0: a numeric zero is neutral too
# A1111's defaults (and its common clients') of fields Atelier does not honour, beyond null / false / empty.
DEFAULTS: dict[str, tuple[Any, ...]] = {
    "subseed": (-1,),
    "subseed_strength": (0,),
    "seed_resize_from_h": (-1, 0),
    "seed_resize_from_w": (-1, 0),
    "eta": (0, 1),
    "s_churn": (0,),
    "s_tmax": (0,),
    "s_tmin": (0,),
    "s_noise": (1,),
    "s_min_uncond": (0,),
    "override_settings_restore_afterwards": (True,),
    "refiner_checkpoint": ("None",),
    "script_name": ("None",),
    "initial_noise_multiplier": (1,),
    "mask_blur": (4,),
    "mask_blur_x": (4,),
    "mask_blur_y": (4,),
    "mask_round": (True,),
    "inpainting_fill": (0,),
    "inpaint_full_res": (True,),
    "inpaint_full_res_padding": (0,),
    "inpainting_mask_invert": (0,),
}
# A field that changes nothing unless the field it names is itself in effect.
SWITCHES: dict[str, str] = {
    "subseed": "subseed_strength",
    "refiner_switch_at": "refiner_checkpoint",
    "script_args": "script_name",
    "firstphase_width": "enable_hr",
    "firstphase_height": "enable_hr",
    "denoising_strength": "enable_hr",  # txt2img: the strength of the high-resolution pass
    **{name: "mask" for name in DEFAULTS if name.startswith(("mask_", "inpaint"))},
}


def _in_effect(data: dict[str, Any], name: str) -> bool:
    if name not in data:
        return False
    value = data[name]
    if value in _NEUTRAL or value in DEFAULTS.get(name, ()):
        return False
    switch = "enable_hr" if name.startswith("hr_") else SWITCHES.get(name)
    return switch is None or _in_effect(data, switch)


def ignored_fields(data: dict[str, Any], img2img: bool, scheduler_honoured: bool = True) -> list[str]:
    """The fields of ``data`` (a txt2img or img2img body) that would change A1111's result but not Atelier's,
    in the order they were sent; ``override_settings.KEY`` and ``alwayson_scripts.NAME`` name nested ones.
    ``scheduler_honoured``: whether the route could combine A1111's ``scheduler`` (schedule type) with the
    sampler."""
    honoured = IMG2IMG_HONOURED if img2img else TXT2IMG_HONOURED
    if not scheduler_honoured:
        honoured = honoured - {"scheduler"}
    ignored = [name for name in data if name not in honoured and _in_effect(data, name)]
    overrides = data.get("override_settings")
    if isinstance(overrides, dict):
        ignored += [
            f"override_settings.{k}" for k in overrides if k not in _HONOURED_SETTINGS and _in_effect(overrides, k)
        ]
    scripts = data.get("alwayson_scripts")
    if isinstance(scripts, dict):
        for name in scripts:
            if name.lower() != "controlnet" and _in_effect(scripts, name):
                ignored.append(f"alwayson_scripts.{name}")
    return ignored
