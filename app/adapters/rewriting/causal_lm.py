"""A prompt rewriter on any Hugging Face causal LM (SmolLM2-135M-Instruct offline, a Chinese instruct model by
path or hub id, or the project's own SFT rewriter).

**Input format** (DiffChat's training pairs are ⟨beautified source prompt + instruction → beautified target
prompt⟩; its template is not published, so this one follows the team's BeautifulPrompt v1 template,
``Instruction: ...\\nInput: ...\\nOutput:``, with the user's instruction as its own line)::

    Instruction: Rewrite the drawing prompt following the user's request. Reply with the new prompt only.
    Input: {source prompt}
    Request: {instruction}
    Output:

A model with a chat template gets the first line as the system message and the rest (without
``Output:``) as the user message. **Candidates**: the greedy continuation first (the most likely rewrite),
then ``n - 1`` samples (temperature 0.8, top-p 0.95, seeded); each is cut at its first line break.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from app.adapters.transformers.llm import load_causal_lm
from app.ports.prompt_sessions import PromptRewriter

TASK = "Rewrite the drawing prompt following the user's request. Reply with the new prompt only."


def plain_prompt(source: str, instruction: str) -> str:
    """The template the SFT rewriter is trained on (and models without a chat template are given)."""
    return f"Instruction: {TASK}\nInput: {source.strip()}\nRequest: {instruction.strip()}\nOutput:"


class TransformersPromptRewriter(PromptRewriter):
    def __init__(
        self,
        path: str,
        name: str | None = None,
        device: str = "cpu",
        max_new_tokens: int = 96,
        temperature: float = 0.8,
        top_p: float = 0.95,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        self.name = name or os.path.basename(os.path.normpath(path))
        self.device = torch.device(device)
        if model is None or tokenizer is None:
            tokenizer, model = load_causal_lm(path, self.device)
        self.tokenizer, self.model = tokenizer, model
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        template = getattr(self.tokenizer, "chat_template", None)
        self._chat = isinstance(template, str) and bool(template)

    def input_text(self, prompt: str, instruction: str) -> str:
        if not self._chat:
            return plain_prompt(prompt, instruction)
        messages = [
            {"role": "system", "content": TASK},
            {"role": "user", "content": f"Input: {prompt.strip()}\nRequest: {instruction.strip()}"},
        ]
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def rewrite(self, prompt: str, instruction: str, n: int, seed: int) -> list[str]:
        ids = self.tokenizer(self.input_text(prompt, instruction), return_tensors="pt", add_special_tokens=False)
        ids = {k: v.to(self.device) for k, v in ids.items()}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        common = {"max_new_tokens": self.max_new_tokens, "pad_token_id": pad}
        outputs: list[list[int]] = []
        with torch.inference_mode():
            greedy = self.model.generate(**ids, do_sample=False, **common)
            outputs.append(greedy[0, ids["input_ids"].shape[1] :].tolist())
            if n > 1:
                torch.manual_seed(seed)  # generate() samples from the global generator
                sampled = self.model.generate(
                    **ids,
                    do_sample=True,
                    temperature=self.temperature,
                    top_p=self.top_p,
                    num_return_sequences=n - 1,
                    **common,
                )
                outputs += [row[ids["input_ids"].shape[1] :].tolist() for row in sampled]
        texts = [self.tokenizer.decode(o, skip_special_tokens=True) for o in outputs]
        return [t.strip().split("\n", 1)[0].strip() for t in texts]
