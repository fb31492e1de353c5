"""Model-editing records and their files in the published shapes: MEND/EasyEdit ZsRE and ROME CounterFact.

An ``EditRecord`` is one counterfactual edit with its generality prompts (``rephrases``), its locality
probes and, for the robust subset, one prefix per rephrase and locality prompt (in that order), which
``to_spec`` prepends.

**Files.** The writers fill the published keys with what a consumer of that shape expects: the prompts
*with* their prefixes, ZsRE's single ``rephrase`` and ``loc`` (the first of each, ``loc`` prefixed with
``"nq question: "`` as real ZsRE files are) and CounterFact's prompt template (``"{}"`` where the subject
goes). Extra keys that real loaders ignore keep what the shape cannot hold, so a written file loads back
to the same records: ``id``, ``relation``, ``subset``, ``split``, ``answers`` (CounterFact), the raw
``rephrases``, ``locality`` (``[{"prompt", "answer"}]``) and ``prefixes``. A real file, without them, is
read from the published keys alone.

**CounterFact locality.** Neighbourhood prompts have no answers in CounterFact: they are prompts about
other subjects whose true object is the edit's ``target_true``, and its neighbourhood score checks that
the model still prefers ``target_true`` there. So a real file's probes get ``target_true`` as answer.

**Errors.** A file that is not valid JSON, not a list, or has a record with a missing or mistyped key or
a record that does not make a valid ``EditSpec`` raises ``InvalidParameters`` naming the file and the
record's index.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.domain.edits import EditSpec, LocalityProbe
from app.domain.errors import InvalidParameters

NQ_PREFIX = "nq question: "
T = TypeVar("T")


@dataclass(frozen=True)
class EditRecord:
    """One edit: ask ``prompt``, want ``target_new`` instead of ``target_true``. ``answers``: all the
    accepted true answers (``target_true`` first); ``prefixes``: empty, or one per rephrase then per
    locality prompt."""

    id: str
    relation: str
    subject: str
    prompt: str
    target_new: str
    target_true: str
    answers: tuple[str, ...] = ()
    rephrases: tuple[str, ...] = ()
    locality: tuple[LocalityProbe, ...] = ()
    prefixes: tuple[str, ...] = ()
    subset: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        if self.prefixes and len(self.prefixes) != len(self.rephrases) + len(self.locality):
            raise InvalidParameters(
                f"Edit {self.id!r} has {len(self.prefixes)} prefixes for {len(self.rephrases)} rephrases and "
                f"{len(self.locality)} locality prompts.",
                field="prefixes",
            )

    def prefixed_rephrases(self) -> tuple[str, ...]:
        return tuple(_prefix(p, r) for p, r in zip(self._prefixes(), self.rephrases, strict=False))

    def prefixed_locality(self) -> tuple[LocalityProbe, ...]:
        pairs = zip(self._prefixes()[len(self.rephrases) :], self.locality, strict=True)
        return tuple(LocalityProbe(_prefix(p, x.prompt), x.answer) for p, x in pairs)

    def to_spec(self) -> EditSpec:
        return EditSpec(
            prompt=self.prompt,
            target=self.target_new,
            subject=self.subject,
            rephrases=self.prefixed_rephrases(),
            locality=self.prefixed_locality(),
        )

    def _prefixes(self) -> tuple[str, ...]:
        return self.prefixes or ("",) * (len(self.rephrases) + len(self.locality))


def _prefix(prefix: str, prompt: str) -> str:
    return f"{prefix} {prompt}" if prefix else prompt


def _extras(r: EditRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "relation": r.relation,
        "subset": r.subset,
        "split": r.split,
        "rephrases": list(r.rephrases),
        "locality": [{"prompt": x.prompt, "answer": x.answer} for x in r.locality],
        "prefixes": list(r.prefixes),
    }


def _write(rows: list[dict[str, Any]], path: str | Path) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


# --- ZsRE ---------------------------------------------------------------------------------------------------


def write_zsre(records: Iterable[EditRecord], path: str | Path) -> None:
    """A JSON list in the MEND/EasyEdit ZsRE shape (``pred`` is the true answer: there is no model here)."""
    rows = []
    for r in records:
        rephrases, locality = r.prefixed_rephrases(), r.prefixed_locality()
        rows.append(
            {
                "subject": r.subject,
                "src": r.prompt,
                "pred": r.target_true,
                "rephrase": rephrases[0] if rephrases else "",
                "alt": r.target_new,
                "answers": list(r.answers or (r.target_true,)),
                "loc": NQ_PREFIX + locality[0].prompt if locality else "",
                "loc_ans": locality[0].answer if locality else "",
                "cond": f"{r.target_true} >> {r.target_new} || {r.prompt}",
                **_extras(r),
            }
        )
    _write(rows, path)


def load_zsre(path: str | Path) -> list[EditRecord]:
    """Records from a ZsRE-shaped file, ours or a real one (``loc`` loses its ``"nq question: "``)."""
    out = []
    for i, row in enumerate(_rows(path)):
        get = _Getter(path, i, row)
        answers = get.strings("answers") or ([get.text("pred")] if "pred" in row else [])
        if not answers or not answers[0].strip():
            raise get.error("has no true answer (empty 'answers' and no 'pred')")
        if "locality" in row:
            locality = get.probes()
        else:
            loc, loc_ans = get.text("loc").removeprefix(NQ_PREFIX), get.value("loc_ans", (str, list), "a string")
            if isinstance(loc_ans, list):  # some ZsRE variants give a list of answers
                loc_ans = loc_ans[0] if loc_ans else ""
            if not isinstance(loc_ans, str):
                raise get.error("'loc_ans' must be a string")
            locality = [LocalityProbe(loc, loc_ans)] if loc.strip() else []
        rephrase = get.text("rephrase")
        out.append(
            get.record(
                id=get.optional("id", f"zsre/{i}"),
                subject=get.text("subject"),
                prompt=get.text("src"),
                target_new=get.text("alt"),
                answers=answers,
                rephrases=get.strings("rephrases") if "rephrases" in row else [rephrase] if rephrase.strip() else [],
                locality=locality,
            )
        )
    return out


# --- CounterFact --------------------------------------------------------------------------------------------


def write_counterfact(records: Iterable[EditRecord], path: str | Path) -> None:
    """A JSON list in the ROME CounterFact shape; ``generation_prompts`` are the prompt and its rephrases."""
    rows = []
    for i, r in enumerate(records):
        found = re.search(re.escape(r.subject), r.prompt) or re.search(re.escape(r.subject), r.prompt, re.IGNORECASE)
        if not r.subject or found is None:
            raise InvalidParameters(f"Edit {r.id!r}: CounterFact needs the subject in the prompt.", field="subject")
        template = r.prompt[: found.start()] + "{}" + r.prompt[found.end() :]
        rows.append(
            {
                "case_id": i,
                "requested_rewrite": {
                    "prompt": template,
                    "relation_id": r.relation,
                    "subject": found.group(0),
                    "target_new": {"str": r.target_new},
                    "target_true": {"str": r.target_true},
                },
                "paraphrase_prompts": list(r.prefixed_rephrases()),
                "neighborhood_prompts": [x.prompt for x in r.prefixed_locality()],
                "generation_prompts": [r.prompt, *r.rephrases],
                "answers": list(r.answers or (r.target_true,)),
                **_extras(r),
            }
        )
    _write(rows, path)


def load_counterfact(path: str | Path) -> list[EditRecord]:
    """Records from a CounterFact-shaped file, ours or a real one (see the module docstring for the
    neighbourhood answers)."""
    out = []
    for i, row in enumerate(_rows(path)):
        get = _Getter(path, i, row)
        rewrite = get.sub("requested_rewrite")
        template, subject = rewrite.text("prompt"), rewrite.text("subject")
        if "{}" not in template:
            raise get.error("'requested_rewrite.prompt' has no '{}' for the subject")
        target_true = rewrite.sub("target_true").text("str")
        neighbours = get.strings("neighborhood_prompts")
        out.append(
            get.record(
                id=get.optional("id", f"counterfact/{row.get('case_id', i)}"),
                subject=subject,
                prompt=template.replace("{}", subject, 1),
                target_new=rewrite.sub("target_new").text("str"),
                answers=get.strings("answers") if "answers" in row else [target_true],
                rephrases=get.strings("rephrases" if "rephrases" in row else "paraphrase_prompts"),
                locality=get.probes() if "locality" in row else [LocalityProbe(p, target_true) for p in neighbours],
                relation=rewrite.optional("relation_id", ""),
            )
        )
    return out


# --- reading ------------------------------------------------------------------------------------------------


def _rows(path: str | Path) -> list[Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidParameters(f"{path}: cannot read a JSON file: {e}", field="path") from e
    if not isinstance(data, list):
        raise InvalidParameters(f"{path}: expected a JSON list of records, got {type(data).__name__}.", field="path")
    return data


class _Getter:
    """Typed access to one record of a file; every error names the file, the record and the key."""

    def __init__(self, path: str | Path, index: int, row: Any, where: str = "") -> None:
        self.path, self.index, self.row, self.where = path, index, row, where
        if not isinstance(row, dict):
            raise self.error(f"{where or 'the record'} must be an object, got {type(row).__name__}")

    def error(self, message: str) -> InvalidParameters:
        return InvalidParameters(f"{self.path}, record {self.index}: {message}.", field="path")

    def value(self, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        name = f"{self.where}{key}"
        if key not in self.row:
            raise self.error(f"missing key {name!r}")
        if not isinstance(self.row[key], kind):
            raise self.error(f"{name!r} must be {what}, got {type(self.row[key]).__name__}")
        return self.row[key]

    def text(self, key: str) -> str:
        return str(self.value(key, str, "a string"))

    def optional(self, key: str, default: str) -> str:
        return self.text(key) if key in self.row else default

    def strings(self, key: str) -> list[str]:
        values = self.value(key, list, "a list of strings")
        if not all(isinstance(v, str) for v in values):
            raise self.error(f"{self.where}{key!r} must be a list of strings")
        return list(values)

    def sub(self, key: str) -> _Getter:
        return _Getter(self.path, self.index, self.value(key, dict, "an object"), f"{self.where}{key}.")

    def probes(self) -> list[LocalityProbe]:
        items = self.value("locality", list, "a list of objects")
        out = []
        for j, x in enumerate(items):
            probe = _Getter(self.path, self.index, x, f"locality[{j}].")
            out.append(self._checked(functools.partial(LocalityProbe, probe.text("prompt"), probe.text("answer"))))
        return out

    def record(self, **fields: Any) -> EditRecord:
        """An ``EditRecord`` from the published fields given and the extra keys of the row, checked by
        building its ``EditSpec``."""
        answers: list[str] = fields.pop("answers")
        fields.setdefault("relation", self.optional("relation", ""))
        fields["rephrases"] = tuple(fields["rephrases"])
        fields["locality"] = tuple(fields["locality"])
        prefixes = tuple(self.strings("prefixes")) if "prefixes" in self.row else ()
        subset, split = self.optional("subset", ""), self.optional("split", "")

        def build() -> EditRecord:
            record = EditRecord(
                **fields, target_true=answers[0], answers=tuple(answers), prefixes=prefixes, subset=subset, split=split
            )
            record.to_spec()
            return record

        return self._checked(build)

    def _checked(self, make: Callable[[], T]) -> T:
        try:
            return make()
        except InvalidParameters as e:
            if e.message.startswith(f"{self.path}, record"):
                raise
            raise self.error(e.message.rstrip(".")) from e


def load_edit_file(path: str | Path, limit: int | None = None) -> list[EditSpec]:
    """Edits from a ZsRE- or CounterFact-shaped JSON file, told apart by the first record's keys."""
    rows = _rows(path)
    if rows and isinstance(rows[0], dict) and "requested_rewrite" in rows[0]:
        records = load_counterfact(path)
    else:
        records = load_zsre(path)
    specs = [r.to_spec() for r in records]
    return specs[:limit] if limit is not None else specs
