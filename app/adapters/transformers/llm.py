"""A causal language model through transformers: greedy answers with token probabilities, and gradient sketches."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from app.domain.errors import InvalidParameters, ModelUnavailable, RequestTooLarge
from app.ports.knowledge import AnswerGradient, Generation, LanguageModel, StopRule

# A wording that keeps SmolLM2-135M answering in English with a short answer; a longer one derailed it into
# other languages (docs/knowledge.md).
DEFAULT_SYSTEM = "Give a short answer."
CONTEXT_INSTRUCTION = "Answer the question using the context."
GRAD_PARAMS = ("last_mlp_down", "lm_head", "last_layer")
# question_state reads the block output at this share of the model's depth (SmolLM2-135M: block 24 of
# 30): late-middle layers best know whether the model knows, as in probing work (SAPLMA and after);
# docs/knowledge.md has the probe's reading per block.
STATE_DEPTH = 0.8
_CHAT_END = "<|im_end|>"


class TransformersLanguageModel(LanguageModel):
    """A ``*ForCausalLM`` model (Llama, Qwen2 and the like), loaded once and shared between requests: in fp32 on a
    CPU, in bf16 (fp16 where the GPU lacks bf16) on CUDA unless ``dtype`` says otherwise. Probabilities, gradients
    and sketches are computed in fp32 whatever the weights are.

    Every use holds one lock: generation is sequential anyway on one device, and
    :meth:`answer_gradient` switches ``requires_grad`` on a few parameters while it runs.
    """

    def __init__(
        self,
        path: str,
        name: str | None = None,
        device: str = "cpu",
        grad_params: str = "last_mlp_down",
        sketch_dim: int = 4096,
        sketch_seed: int = 0,
        system_prompt: str = DEFAULT_SYSTEM,
        state_depth: float = STATE_DEPTH,
        dtype: str = "auto",
    ) -> None:
        if grad_params not in GRAD_PARAMS:
            raise InvalidParameters(f"grad_params must be one of {', '.join(GRAD_PARAMS)}.", field="grad_params")
        if sketch_dim < 1:
            raise InvalidParameters("sketch_dim must be at least 1.", field="sketch_dim")
        if not 0.0 <= state_depth <= 1.0:
            raise InvalidParameters("state_depth must lie in [0, 1].", field="state_depth")
        self.name = name or os.path.basename(os.path.normpath(path))
        try:
            self.device = torch.device(device)
        except RuntimeError as e:
            raise InvalidParameters(f"Unknown device {device!r}.", field="device") from e
        self.grad_params = grad_params
        self.sketch_dim = sketch_dim
        self.sketch_seed = sketch_seed
        self.system_prompt = system_prompt
        self.tokenizer, self.model = load_causal_lm(path, self.device, weights_dtype(dtype, self.device))
        self._lock = threading.RLock()  # re-entered by a served sequence that holds it from prefill to end
        self._chat = isinstance(self.tokenizer.chat_template, str) and bool(self.tokenizer.chat_template)
        self._stop_ids, self._end_id = self._end_tokens()
        self._base: Any = self.model.base_model
        self._head: Any = self.model.get_output_embeddings()
        self._params = self._gradient_parameters()
        self._max_positions: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self._buckets: torch.Tensor | None = None  # the count sketch's hash, built on first use
        self._signs: torch.Tensor | None = None
        layers = int(getattr(self.model.config, "num_hidden_layers", 0) or 0)
        self.state_layer = round(state_depth * layers)  # index into hidden_states: 0 is the embeddings
        # The prefill of the last question_state call, for the generate call that follows it in the
        # same thread; any forward pass of the model in between (an editor's, another thread's) voids it.
        self._forwards = 0
        self._base.register_forward_pre_hook(self._count_forward)
        self._prefilled = threading.local()
        # Hooks that keep state per sequence across forward passes (GRACE's codebook routing): while any is
        # installed, a served sequence decodes alone, holding the lock from its prefill to its last token.
        self.sequence_state_hooks: set[object] = set()

    @property
    def stop_ids(self) -> frozenset[int]:
        """Tokens that end an answer: EOS and the chat template's end of turn."""
        return self._stop_ids

    @property
    def lock(self) -> threading.RLock:
        """Held by every use of the model, editors included (they switch gradients and weight deltas)."""
        return self._lock

    # -- prompts -------------------------------------------------------------------------------

    def prompt(self, question: str, passages: Sequence[str] = ()) -> str:
        """The text the model continues: the chat template when the tokenizer has one, else a plain format."""
        context = "\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(passages, start=1))
        if self._chat:
            user = f"Context:\n{context}\n\n{CONTEXT_INSTRUCTION}\nQuestion: {question}" if passages else question
            messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return str(text)
        head = f"{self.system_prompt}\n\n" if self.system_prompt else ""
        body = f"Context:\n{context}\n{CONTEXT_INSTRUCTION}\n" if passages else ""
        return f"{head}{body}Question: {question}\nAnswer:"

    def encode_answer(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        """Token ids of the passage-free prompt and of ``answer`` as its reply (with the end-of-turn token
        when the model has a chat template): the sequence :meth:`answer_gradient` scores."""
        prompt_ids = self._encode(self.prompt(question))
        text = answer.strip() if self._chat else " " + answer.strip()
        answer_ids: list[int] = self.tokenizer(text, add_special_tokens=False).input_ids
        if self._chat and self._end_id is not None:
            answer_ids = [*answer_ids, self._end_id]
        if not answer_ids:
            raise InvalidParameters("The answer is empty.", field="answer")
        return prompt_ids, answer_ids

    # -- the port --------------------------------------------------------------------------------

    def generate(
        self, question: str, passages: Sequence[str] = (), max_new_tokens: int = 32, stop: StopRule | None = None
    ) -> Generation:
        """Greedy decoding with the KV cache; ``stop`` sees the token probabilities after every token.

        Passages come best first: when they do not all fit the model's context with the question and
        ``max_new_tokens``, the last ones are left out (``RequestTooLarge`` only if the question alone
        does not fit)."""
        started = time.perf_counter()
        if max_new_tokens < 1:
            raise InvalidParameters("max_new_tokens must be at least 1.", field="max_new_tokens")
        kept = list(passages)
        prompt_ids = self._encode(self.prompt(question, kept))
        while kept and self._max_positions is not None and len(prompt_ids) + max_new_tokens > self._max_positions:
            kept.pop()
            prompt_ids = self._encode(self.prompt(question, kept))
        self._check_length(len(prompt_ids) + max_new_tokens)
        tokens: list[int] = []
        probs: list[float] = []
        stopped_early = False
        with self._lock, torch.inference_mode():
            out = self._take_prefill(prompt_ids)
            if out is None:
                inputs = torch.tensor([prompt_ids], device=self.device)
                out = self.model(input_ids=inputs, use_cache=True, logits_to_keep=1)
            while True:
                distribution = torch.softmax(out.logits[0, -1].float(), dim=-1)
                token = int(torch.argmax(distribution))
                if token in self._stop_ids:
                    break
                tokens.append(token)
                probs.append(float(distribution[token]))
                if stop is not None and stop(list(probs)):
                    stopped_early = True
                    break
                if len(tokens) >= max_new_tokens:
                    break
                inputs = torch.tensor([[token]], device=self.device)
                out = self.model(
                    input_ids=inputs, past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1
                )
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return Generation(
            text=text,
            token_probs=probs,
            prompt_tokens=len(prompt_ids),
            seconds=time.perf_counter() - started,
            stopped_early=stopped_early,
        )

    def answer_gradient(self, question: str, answer: str) -> AnswerGradient:
        """Mean NLL of ``answer`` (passage-free prompt) and a count sketch of its gradient.

        The gradient is taken over one declared parameter subset only (``grad_params``):
        ``last_mlp_down``, the last decoder layer's ``mlp.down_proj.weight``; ``last_layer``, every
        parameter of the last decoder layer; ``lm_head``, the output projection. The head is often
        tied to the input embeddings (SmolLM2), whose autograd gradient would mix in the embedding
        lookup, so its gradient is computed in closed form, (softmax − onehot)ᵀ·h / n, from the same
        forward pass.

        The flattened gradient (up to millions of numbers) is compressed to ``sketch_dim`` numbers
        with a count sketch: a fixed random bucket ``b(i)`` in [0, sketch_dim) and sign ``s(i)`` = ±1
        per coordinate (seeded by ``sketch_seed``, so every call and every process uses the same
        hash), and ``sketch[b] = Σ_{i: b(i)=b} s(i)·g(i)``. Since E[s(i)s(j)] = 0 for i ≠ j, the inner
        product of two sketches is an unbiased estimate of the inner product of the full gradients
        (variance at most about (‖x‖²‖y‖² + ⟨x,y⟩²)/sketch_dim), so dot products, norms and cosines, and the mean
        gradient E(∇ins) over a calibration set, can be computed and stored on sketches of a few
        thousand floats. Sketching is linear (the sketch of a mean is the mean of the sketches) and
        costs one pass over the gradient.
        """
        prompt_ids, answer_ids = self.encode_answer(question, answer)
        self._check_length(len(prompt_ids) + len(answer_ids))
        n = len(answer_ids)
        with self._lock:
            inputs = torch.tensor([prompt_ids + answer_ids], device=self.device)
            targets = torch.tensor(answer_ids, device=self.device)
            try:
                for parameter in self._params:
                    parameter.requires_grad_(True)
                with torch.enable_grad():
                    hidden = self._base(input_ids=inputs).last_hidden_state[0, -n - 1 : -1]
                    logits = self._head(hidden).float()
                    loss = F.cross_entropy(logits, targets)
                    if self._params:
                        grads = list(torch.autograd.grad(loss, self._params))
                    else:  # lm_head: closed form; nothing in the forward pass required a gradient
                        error = torch.softmax(logits, dim=-1)
                        error[torch.arange(n, device=self.device), targets] -= 1.0
                        grads = [error.T @ hidden.float() / n]
            finally:
                for parameter in self._params:
                    parameter.requires_grad_(False)
                    parameter.grad = None
            flat = torch.cat([g.detach().reshape(-1).float() for g in grads])
            vector = self._sketch(flat)
        return AnswerGradient(nll=float(loss.detach()), vector=vector.cpu().tolist())

    def question_state(self, question: str) -> list[float]:
        """The hidden state of the passage-free prompt's last token after block ``state_layer``.

        The prompt's key-value cache and next-token logits are kept for a ``generate`` of the same
        question that follows in the same thread with no other forward pass of the model in between:
        deciding from the state and then answering costs one prefill, not two."""
        prompt_ids = self._encode(self.prompt(question))
        self._check_length(len(prompt_ids) + 1)
        with self._lock, torch.inference_mode():
            inputs = torch.tensor([prompt_ids], device=self.device)
            out = self.model(input_ids=inputs, use_cache=True, logits_to_keep=1, output_hidden_states=True)
            state = out.hidden_states[self.state_layer][0, -1].float().cpu().tolist()
            out.hidden_states = None
            self._prefilled.entry = (tuple(prompt_ids), self._forwards, out)
        return [float(x) for x in state]

    # -- internals -------------------------------------------------------------------------------

    def _count_forward(self, module: Any, args: Any) -> None:
        self._forwards += 1

    def _take_prefill(self, prompt_ids: Sequence[int]) -> Any:
        """The output kept by ``question_state`` for exactly these prompt ids, if still valid (used once)."""
        entry = getattr(self._prefilled, "entry", None)
        self._prefilled.entry = None
        if entry is None:
            return None
        ids, forwards, out = entry
        return out if ids == tuple(prompt_ids) and forwards == self._forwards else None

    def _encode(self, text: str) -> list[int]:
        # A chat-templated prompt already holds its special tokens.
        ids: list[int] = self.tokenizer(text, add_special_tokens=not self._chat).input_ids
        return ids

    def _check_length(self, tokens: int) -> None:
        if self._max_positions is not None and tokens > self._max_positions:
            raise RequestTooLarge(
                f"The prompt and answer need {tokens} tokens; {self.name} handles at most {self._max_positions}."
            )

    def _end_tokens(self) -> tuple[frozenset[int], int | None]:
        """Tokens that end an answer (EOS, the chat end-of-turn), and the end-of-turn token an answer is scored with."""
        eos = self.tokenizer.eos_token_id
        chat_end = self.tokenizer.get_vocab().get(_CHAT_END)
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        candidates: list[Any] = [eos, chat_end]
        candidates += configured if isinstance(configured, list) else [configured]
        stop_ids = frozenset(int(t) for t in candidates if t is not None)
        uses_chat_end = chat_end is not None and self._chat and _CHAT_END in self.tokenizer.chat_template
        return stop_ids, (chat_end if uses_chat_end else eos)

    def _gradient_parameters(self) -> list[torch.nn.Parameter]:
        if self.grad_params == "lm_head":
            if self._head is None:
                raise ModelUnavailable(f"{self.name} has no output projection to take a gradient on.")
            return []
        layers = getattr(self._base, "layers", None)
        if not layers:
            raise ModelUnavailable(f"{self.name}: no decoder layers found (expected a Llama-style model).")
        last = layers[-1]
        if self.grad_params == "last_layer":
            return list(last.parameters())
        down = getattr(getattr(last, "mlp", None), "down_proj", None)
        if down is None:
            raise ModelUnavailable(f"{self.name}: the last decoder layer has no mlp.down_proj.")
        return [down.weight]

    def _sketch(self, flat: torch.Tensor) -> torch.Tensor:
        if self._buckets is None or self._signs is None or self._buckets.numel() != flat.numel():
            generator = torch.Generator().manual_seed(self.sketch_seed)
            buckets = torch.randint(0, self.sketch_dim, (flat.numel(),), generator=generator)
            signs = torch.randint(0, 2, (flat.numel(),), generator=generator, dtype=torch.int8) * 2 - 1
            self._buckets = buckets.to(device=self.device, dtype=torch.int32)
            self._signs = signs.to(self.device)
        sketch = torch.zeros(self.sketch_dim, device=self.device)
        return sketch.index_add_(0, self._buckets, flat * self._signs)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def weights_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: fp32 on a CPU (half-precision matmuls are slow there), bf16 on a GPU that has it, else fp16."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in DTYPES:
        raise InvalidParameters(f"dtype must be auto or one of {', '.join(DTYPES)}.", field="dtype")
    return DTYPES[name]


def load_causal_lm(path: str, device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """Tokenizer and model in ``dtype``, eval mode, no parameter requiring a gradient.

    A folder is read with ``local_files_only``; anything else that does not look like a file-system
    path is passed to transformers as a hub id (for machines that may download)."""
    import transformers.utils.logging

    library_logging: Any = transformers.utils.logging
    library_logging.set_verbosity_error()  # no load-time progress bars or warnings in a CLI or server log
    library_logging.disable_progress_bar()
    local = os.path.isdir(path)
    if not local and (os.path.isabs(path) or path.startswith((".", "~")) or os.path.exists(path)):
        raise ModelUnavailable(f"No language model folder at {path}.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=local)
        model.to(device).eval().requires_grad_(False)
    except (OSError, ValueError, KeyError, RuntimeError, AssertionError) as e:
        raise ModelUnavailable(f"Cannot load the language model at {path}: {e}") from e
    return tokenizer, model
