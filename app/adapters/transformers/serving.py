"""Serving the loaded causal LM to concurrent clients: sequences that arrive together decode together.

One decoding thread takes the sequences waiting (up to ``max_batch``, gathered for ``window`` seconds after the
first), prefills them as one left-padded batch and then decodes one token per sequence per step, each with its own
sampling (temperature, nucleus, its own seeded generator), stop strings and limit. A sequence that ends or whose
client went away leaves the batch at once (its rows of the KV cache are dropped); sequences that arrive meanwhile
wait for the next batch. Each step holds the model's lock, so editors and the knowledge flow's own generation
interleave between steps and never see the weights change under a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from app.adapters.transformers.llm import TransformersLanguageModel
from app.domain.chat import ChatMessage, Delta, Sampling, TokenLogprob
from app.domain.errors import GenerationFailed, InvalidParameters
from app.domain.models import ModelInfo
from app.ports.metrics import TextMetrics
from app.ports.text_generation import TextGenerator, TokenStream

log = logging.getLogger(__name__)
_FAILED = "Text generation failed unexpectedly; the server log has the details."


class _Stream(TokenStream):
    """Deltas from the decoding thread to one reader, a thread or an event loop."""

    def __init__(self) -> None:
        self._items: deque[Delta | Exception] = deque()
        self._lock = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.cancelled = threading.Event()
        self.ended = False  # its last delta was put (set by the decoding thread)

    def put(self, item: Delta | Exception) -> None:
        with self._lock:
            self._items.append(item)
            self._lock.notify_all()
            loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the reader's loop has closed
                loop.call_soon_threadsafe(wake.set)

    def cancel(self) -> None:
        self.cancelled.set()

    def __iter__(self) -> Iterator[Delta]:
        while True:
            with self._lock:
                while not self._items:
                    self._lock.wait()
                item = self._items.popleft()
            if isinstance(item, Exception):
                raise item
            yield item
            if item.finish_reason is not None:
                return

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._read()

    async def _read(self) -> AsyncIterator[Delta]:
        with self._lock:
            self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
            wake = self._wake
        while True:
            with self._lock:
                item = self._items.popleft() if self._items else None
            if item is None:
                await wake.wait()
                wake.clear()
                continue
            if isinstance(item, Exception):
                raise item
            yield item
            if item.finish_reason is not None:
                return


@dataclass
class _Sequence:
    prompt: list[int]
    sampling: Sampling
    limit: int  # new tokens at most
    stream: _Stream
    generator: torch.Generator | None
    variant: str = ""  # "" the model as edited now, "base" the original
    adapter: str | None = None  # a LoRA adapter applied to this sequence
    started: float = field(default_factory=time.monotonic)
    first_token: bool = False  # reported its first token (to the metrics)
    tokens: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the text already delivered


class BatchedTextGenerator(TextGenerator):
    """Serves a ``TransformersLanguageModel`` (the very model knowledge queries use and edits change)."""

    def __init__(
        self,
        lm: TransformersLanguageModel,
        max_batch: int = 8,
        window: float = 0.005,
        unedited: Callable[[], AbstractContextManager[None]] | None = None,
        metrics: TextMetrics | None = None,
    ) -> None:
        self._lm = lm
        self._metrics = metrics
        self._unedited = unedited  # the model as the original inside (edits off), for the "base" variant
        self.variants: tuple[str, ...] = ("", "base") if unedited is not None else ("",)
        self.name = lm.name
        self.context_length: int | None = getattr(lm.model.config, "max_position_embeddings", None)
        self._max_batch, self._window = max_batch, window
        tokenizer = lm.tokenizer
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
        self._ends: frozenset[int] = lm.stop_ids
        self._pending: deque[_Sequence] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._decoding = False
        self._adapters: dict[str, str] = {}  # loaded LoRA adapters: name -> folder
        self._adapter_parameters: dict[str, list[torch.nn.Parameter]] = {}
        self.batches: deque[int] = deque(maxlen=1000)  # sizes of recent batches (for tests and metrics)

    @property
    def busy(self) -> bool:
        """Sequences are waiting or decoding."""
        with self._ready:
            return bool(self._pending) or self._decoding

    # -- prompts ---------------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[ChatMessage]) -> list[int]:
        tokenizer = self._lm.tokenizer
        turns = [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in messages]
        if isinstance(tokenizer.chat_template, str) and tokenizer.chat_template:
            text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
            ids: list[int] = tokenizer(str(text), add_special_tokens=False).input_ids
            return ids
        plain = "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"
        return self.text_prompt(plain)

    def text_prompt(self, text: str) -> list[int]:
        ids: list[int] = self._lm.tokenizer(text).input_ids
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self._lm.tokenizer(text, add_special_tokens=False).input_ids)

    # -- sequences -------------------------------------------------------------------------------
    def start(
        self,
        prompt: list[int],
        sampling: Sampling,
        choice: int = 0,
        variant: str = "",
        adapter: ModelInfo | None = None,
    ) -> TokenStream:
        if variant not in self.variants:
            raise ValueError(f"unknown variant {variant!r}")
        adapter_name = self._load_adapter(adapter) if adapter is not None else None
        room = (self.context_length or (len(prompt) + (sampling.max_tokens or 512))) - len(prompt)
        limit = min(sampling.max_tokens or room, room)
        generator = None
        if not sampling.greedy:
            seed = sampling.seed + choice if sampling.seed is not None else int.from_bytes(os.urandom(8), "little")
            generator = torch.Generator().manual_seed(seed % 2**63)
        sequence = _Sequence(list(prompt), sampling, max(limit, 0), _Stream(), generator, variant, adapter_name)
        with self._ready:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._serve, name="atelier-llm", daemon=True)
                self._thread.start()
            self._pending.append(sequence)
            self._ready.notify_all()
        return sequence.stream

    def close(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify_all()

    def _take(self) -> list[_Sequence] | None:
        with self._ready:
            while not self._pending and not self._stopping:
                self._ready.wait()
            if self._stopping:
                return None
            first = self._pending.popleft()
            if self._lm.sequence_state_hooks:  # hooks with per-sequence state: one sequence at a time
                return [first]
            deadline = time.monotonic() + self._window
            while len(self._pending) < self._max_batch - 1 and (left := deadline - time.monotonic()) > 0:
                self._ready.wait(left)
            # One variant and one adapter per batch: the edits, and a LoRA, are on or off for every row of a pass.
            like = [s for s in self._pending if (s.variant, s.adapter) == (first.variant, first.adapter)]
            batch = [first, *like[: self._max_batch - 1]]
            for sequence in batch[1:]:
                self._pending.remove(sequence)
            self._decoding = True
            return batch

    def _serve(self) -> None:
        while (batch := self._take()) is not None:
            live = []
            for sequence in batch:
                if sequence.stream.cancelled.is_set():
                    self._end(sequence, Delta(finish_reason="cancelled"))
                elif sequence.limit == 0:
                    self._end(sequence, Delta(finish_reason="length"))
                else:
                    live.append(sequence)
            if not live:
                continue
            self.batches.append(len(live))
            if self._metrics is not None:
                self._metrics.text_batch_ran(self.name, len(live))
            alone = contextlib.nullcontext() if not self._lm.sequence_state_hooks else self._lm.lock
            try:
                with alone:  # a stateful hook sees this sequence's forward passes and no other
                    self._decode(live)
            except Exception:
                log.exception("decoding a batch of %d sequences failed", len(live))
                for sequence in live:
                    if not sequence.stream.ended:
                        self._report(sequence, "error")
                        sequence.stream.put(GenerationFailed(_FAILED))
            finally:
                with self._ready:
                    self._decoding = False

    def _decode(self, rows: list[_Sequence]) -> None:
        model, lock = self._lm.model, self._lm.lock
        device = self._lm.device
        edits_off = self._unedited if rows[0].variant == "base" and self._unedited is not None else None
        adapter = rows[0].adapter

        @contextlib.contextmanager
        def edits() -> Iterator[None]:
            """The batch's variant of the model, for one forward pass (under the model's lock)."""
            with edits_off() if edits_off is not None else contextlib.nullcontext():
                if adapter is None:
                    yield
                    return
                model.set_adapter(adapter)
                model.enable_adapters()
                try:
                    yield
                finally:
                    model.disable_adapters()
                    for parameter in self._adapter_parameters[adapter]:  # peft's set_adapter marks them trainable
                        parameter.requires_grad_(False)

        width = max(len(s.prompt) for s in rows)
        ids = torch.full((len(rows), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, sequence in enumerate(rows):
            ids[i, width - len(sequence.prompt) :] = torch.tensor(sequence.prompt)
            mask[i, width - len(sequence.prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
        with lock, edits(), torch.inference_mode():
            out: Any = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
            )
        while True:
            logits = out.logits[:, -1, :].float()
            chosen, keep = [], []
            for i, sequence in enumerate(rows):
                token = self._step(sequence, logits[i])
                if token is not None:
                    chosen.append(token)
                    keep.append(i)
            if not keep:
                return
            cache = out.past_key_values
            if len(keep) < len(rows):  # finished or abandoned sequences leave the batch
                index = torch.tensor(keep, device=device)
                cache.reorder_cache(index)
                mask, positions = mask[index], positions[index]
                rows = [rows[i] for i in keep]
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=device)], dim=1)
            positions = positions[:, -1:] + 1
            step = torch.tensor(chosen, device=device).unsqueeze(1)
            with lock, edits(), torch.inference_mode():
                out = model(
                    input_ids=step,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )

    def _load_adapter(self, adapter: ModelInfo) -> str:
        """Load a PEFT LoRA adapter into the model once (switched off: only its own sequences' forward passes turn
        it on); refuses one that does not fit the model."""
        model = self._lm.model
        with self._lm.lock:
            if self._adapters.get(adapter.name) == adapter.path:
                return adapter.name
            if adapter.name in self._adapters:  # re-registered under the same name: the new weights
                model.delete_adapter(adapter.name)
                del self._adapters[adapter.name]
                self._adapter_parameters.pop(adapter.name, None)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.load_adapter(adapter.path, adapter_name=adapter.name)
            except Exception as e:  # peft raises ValueError, KeyError, RuntimeError (shapes) alike
                with contextlib.suppress(Exception):
                    model.delete_adapter(adapter.name)
                log.info("adapter %s does not fit %s: %s", adapter.name, self.name, e)
                raise InvalidParameters(
                    f"The adapter {adapter.name!r} does not fit the model {self.name!r} (it was made for "
                    f"{adapter.base_model or 'another model'}).",
                    code="adapter_mismatch",
                    field="model",
                ) from e
            finally:
                if getattr(model, "_hf_peft_config_loaded", False):
                    model.disable_adapters()  # loading turns the new adapter on for every pass
            model.requires_grad_(False)
            self._adapters[adapter.name] = adapter.path
            self._adapter_parameters[adapter.name] = [
                parameter for key, parameter in model.named_parameters() if f".{adapter.name}." in key
            ]
        return adapter.name

    def _step(self, sequence: _Sequence, logits: torch.Tensor) -> int | None:
        """Draw the sequence's next token and deliver what it adds; None when the sequence has ended."""
        if sequence.stream.cancelled.is_set():
            self._end(sequence, Delta(finish_reason="cancelled", completion_tokens=len(sequence.tokens)))
            return None
        sampling = sequence.sampling
        token = int(torch.argmax(logits)) if sampling.greedy else _sample(logits, sampling, sequence.generator)
        entries: list[TokenLogprob] = []
        if sampling.logprobs and token not in self._ends:
            logprobs = torch.log_softmax(logits, dim=-1)
            top: tuple[tuple[str, float], ...] = ()
            if sampling.top_logprobs:
                values, indices = torch.topk(logprobs, sampling.top_logprobs)
                top = tuple((self._piece(int(i)), float(v)) for v, i in zip(values, indices, strict=True))
            entries.append(TokenLogprob(self._piece(token), float(logprobs[token]), top))
        if token in self._ends:
            self._deliver(sequence, entries, "stop")
            return None
        sequence.tokens.append(token)
        finish = "length" if len(sequence.tokens) >= sequence.limit else None
        return None if self._deliver(sequence, entries, finish) else token

    def _deliver(self, sequence: _Sequence, entries: list[TokenLogprob], finish: str | None) -> bool:
        """Send the text not yet sent (holding back what may still become a stop string or a whole character);
        True when the sequence has ended."""
        text = self._lm.tokenizer.decode(sequence.tokens, skip_special_tokens=True)
        stops = sequence.sampling.stop
        found = [i for i in (text.find(s, max(0, sequence.sent - len(s))) for s in stops) if i >= 0]
        if found:
            text, finish = text[: min(found)], "stop"
        if finish is None:
            held = max((len(s) - 1 for s in stops), default=0)
            end = len(text) - held
            if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for its other bytes
                end = min(end, len(text) - 1)
        else:
            end = len(text)
        piece = text[sequence.sent : max(end, sequence.sent)]
        sequence.sent += len(piece)
        if finish is not None:
            self._end(sequence, Delta(piece, entries, finish, len(sequence.tokens)))
        elif piece or entries:
            sequence.stream.put(Delta(piece, entries, finish, len(sequence.tokens)))
        if not sequence.first_token and self._metrics is not None:
            sequence.first_token = True
            self._metrics.text_first_token(self.name, time.monotonic() - sequence.started)
        return finish is not None

    def _end(self, sequence: _Sequence, last: Delta) -> None:
        """The sequence's last delta, reported to the metrics."""
        self._report(sequence, last.finish_reason or "stop")
        sequence.stream.put(last)

    def _report(self, sequence: _Sequence, finish_reason: str) -> None:
        sequence.stream.ended = True
        if self._metrics is not None:
            self._metrics.text_sequence_ended(self.name, finish_reason, len(sequence.prompt), len(sequence.tokens))

    def _piece(self, token: int) -> str:
        return str(self._lm.tokenizer.decode([token]))


def _sample(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(probs, descending=True)
        before = torch.cumsum(ordered, dim=-1) - ordered  # mass of the more likely tokens
        ordered[before >= sampling.top_p] = 0.0  # keep the smallest set whose mass reaches top_p
        probs = torch.zeros_like(probs).scatter_(0, order, ordered)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
