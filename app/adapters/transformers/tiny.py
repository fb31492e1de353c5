"""A tiny random-init Llama with a real (small, trained here) byte-level BPE tokenizer and a ChatML template.

Built offline in about a second, deterministic for a seed; tests use it where a real
language model is not needed (its answers are noise, but every code path of the adapter runs).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

# transformers' tokenizer classes are untyped constructors for mypy.
_TOKENIZER_CLASS: Any = PreTrainedTokenizerFast
BOS, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VOCAB_SIZE = 640

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_SAMPLE = """\
Paris is the capital of France. Berlin is the capital of Germany. Rome is the capital of Italy.
Madrid is the capital of Spain. Tokyo is the capital of Japan. Beijing is the capital of China.
What is the capital of France? The capital of France is Paris.
Answer the question with a short phrase. Use the context to answer the question.
Context: The river flows through the old town, past the market and the cathedral.
Question: Who wrote the book? Answer: The book was written by a teacher from the north.
A cat sat on the snowy mountain and watched the clouds move over the valley.
The population of the city grew quickly after the railway was built in the nineteenth century.
巴黎是法国的首都。柏林是德国的首都。北京是中国的首都。东京是日本的首都。
法国的首都是哪里？法国的首都是巴黎。请用简短的短语回答问题。
一只猫坐在雪山上，看着云从山谷上空飘过。河流穿过老城，经过市场和教堂。
这本书是谁写的？这本书是一位来自北方的老师写的。火车站建成以后，城市的人口增长很快。
"""


def byte_level_bpe(texts: Iterable[str], vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    """A byte-level BPE trained on ``texts`` (deterministic; decoding gives back the exact text)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def build_tokenizer() -> Any:
    """A byte-level BPE trained on the built-in English and Chinese sample (deterministic)."""
    tokenizer = byte_level_bpe(_SAMPLE.splitlines(), VOCAB_SIZE, [BOS, IM_START, IM_END])
    fast = _TOKENIZER_CLASS(tokenizer_object=tokenizer, bos_token=BOS, eos_token=IM_END, pad_token=BOS, unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(out_dir: str, seed: int = 0) -> str:
    """Save a 2-layer Llama (hidden 64, 4 heads, MLP 128, tied embeddings) and its tokenizer to ``out_dir``.

    The last layer's ``mlp.down_proj`` has 64 × 128 = 8192 weights, twice a 4096-float gradient sketch."""
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        initializer_range=0.3,  # the default 0.02 gives near-uniform logits and the same token over and over
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_tiny_lora(
    llm_dir: str, out_dir: str, seed: int = 0, rank: int = 4, targets: tuple[str, ...] = ("q_proj", "v_proj")
) -> str:
    """Save a PEFT LoRA adapter for the model in ``llm_dir`` (on the ``targets`` projections, rank ``rank``) with
    random A and B matrices, so applying it changes the model's answers (a freshly initialised LoRA has B = 0)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = LlamaForCausalLM.from_pretrained(llm_dir, dtype=torch.float32)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=list(targets), init_lora_weights=False, task_type="CAUSAL_LM"
    )
    peft_model: Any = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.normal_(0.0, 0.5)
    peft_model.save_pretrained(out_dir)
    return out_dir
