"""From a request's values, in any dialect, to a queued job in one step.

Each entrypoint maps its own request shape (Atelier's, A1111's, Diffusers-API's, OpenAI's, the CLI's
options) to a dict of ``GenerationParams`` fields; this is the one place that dict becomes
``GenerationParams``: unknown fields are refused, inline images are stored as the owner's uploads, the
model defaults to the deployment's, and the job is submitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.domain.errors import InvalidParameters
from app.domain.generation import GenerationParams
from app.domain.jobs import GenerationJob
from app.usecases.resolve_images import ResolveImages
from app.usecases.submit_generation import SubmitGeneration


class AcceptGeneration:
    def __init__(self, images: ResolveImages, submit: SubmitGeneration, default_model: str) -> None:
        self._images, self._submit, self._default_model = images, submit, default_model

    def params(self, values: Mapping[str, Any], owner: str = "local") -> GenerationParams:
        """Validated parameters of ``values`` (``None`` values are omitted). Specs may be given plainly:
        ``loras=["poem:0.7"]``, ``outpaint="64,64,0,0"``, ``controls=[{"image": id, "kind": "depth"}]`` (or one unit
        as ``control={"image": id}``)."""
        given = {k: v for k, v in values.items() if v is not None}
        if "control" in given:  # one ControlNet unit, the shorthand for a one-unit ``controls``
            if given.get("controls"):
                raise InvalidParameters(
                    "Give one ControlNet unit as control or several as controls, not both.",
                    code="invalid_controls",
                    field="control",
                )
            given["controls"] = [given.pop("control")]
        unknown = set(given) - set(GenerationParams.__dataclass_fields__)
        if unknown:
            raise InvalidParameters(f"Unknown parameters: {', '.join(sorted(unknown))}.", code="unknown_parameter")
        given = self._images.store_inline(given, owner)
        given.setdefault("model", self._default_model)
        return GenerationParams.from_dict(given)

    def __call__(self, values: Mapping[str, Any], owner: str = "local") -> GenerationJob:
        """The queued job, stored before this returns."""
        return self._submit(owner, self.params(values, owner))
