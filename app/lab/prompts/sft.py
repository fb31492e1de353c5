"""The demo world's own Chinese rewriter: a small causal LM trained from scratch by supervised fine-tuning
on InstructPE-format records (``atelier prompts train-sft``).

**Data.** Generated records ⟨source_prompt, instruction, beautified_source_prompt, beautified_target_prompt⟩
(``instructpe_record`` over random demo-world scenes), or the published InstructPE JSON (``load_instructpe``).
DiffChat maps ⟨beautified source + instruction⟩ → beautified target; in a session the first prompt is the
user's plain one, so each record is used with its plain source or its beautified source as the input,
one or the other at random (documented choice). The input is ``plain_prompt(source, instruction)``
(the causal-LM rewriter's format); the loss is the target tokens' NLL (and the end token), never the input's.

**Model.** A Llama (4 blocks, width 192, 6 heads, MLP 512, tied embeddings; about 2 M parameters) over
a byte-level BPE of 1024 tokens trained on the corpus; AdamW (lr 1e-3, cosine decay, 100 warm-up steps),
batches of 32. Written to ``<data dir>/models/rewriter-sft`` with ``training.json``; served by
``TransformersPromptRewriter`` (setting ``prompt_rewriter = "sft"``).

**Held-out exact match.** The share of held-out records (scenes of the held-out split) whose greedy rewrite
reads back (``parse_caption``) as exactly the target scene.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from app.adapters.rewriting.causal_lm import TransformersPromptRewriter, plain_prompt
from app.demo_world.instructions import InstructPERecord, instructpe_record
from app.demo_world.parsing import parse_caption
from app.demo_world.scenes import SceneSampler
from app.domain.errors import InvalidParameters

Progress = Callable[[int, int, dict[str, float]], None]
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
FIELDS = ("source_prompt", "instruction", "beautified_source_prompt", "beautified_target_prompt")


def generate_records(n: int, seed: int = 0, split: str = "train") -> list[InstructPERecord]:
    rng = random.Random(seed)
    sampler = SceneSampler(rng, split=split)
    return [instructpe_record(sampler.sample(), rng)[0] for _ in range(n)]


def load_instructpe(path: str | Path) -> list[InstructPERecord]:
    """The published InstructPE JSON (a list of objects, or one object per line) with its four fields."""
    text = Path(path).read_text(encoding="utf-8").strip()
    rows: Iterable[Any] = json.loads(text) if text.startswith("[") else (json.loads(line) for line in text.splitlines())
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or any(not isinstance(row.get(f), str) or not row[f].strip() for f in FIELDS):
            raise InvalidParameters(f"Record {i} of {path} lacks one of {', '.join(FIELDS)}.", field="data")
        out.append(InstructPERecord(**{f: row[f] for f in FIELDS}))
    return out


@dataclass
class SftConfig:
    steps: int = 3000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 100
    records: int = 20000
    held_out: int = 200
    vocab: int = 1024
    hidden: int = 192
    layers: int = 4
    heads: int = 6
    mlp: int = 512
    seed: int = 0


def _pairs(records: Sequence[InstructPERecord], rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for r in records:
        source = r.beautified_source_prompt if rng.random() < 0.5 else r.source_prompt
        out.append((plain_prompt(source, r.instruction), " " + r.beautified_target_prompt))
    return out


def _tokenizer(texts: Iterable[str], vocab: int) -> Any:
    from transformers import PreTrainedTokenizerFast

    from app.adapters.transformers.tiny import byte_level_bpe

    cls: Any = PreTrainedTokenizerFast
    core = byte_level_bpe(texts, vocab, [PAD, BOS, EOS])
    return cls(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=None)


def states_target(text: str, record: InstructPERecord) -> bool:
    """Whether a rewrite reads back as exactly the record's target scene (one that does not read is a miss)."""
    with contextlib.suppress(ValueError, IndexError):
        return parse_caption(text) == parse_caption(record.beautified_target_prompt)
    return False


def exact_match(rewriter: TransformersPromptRewriter, records: Sequence[InstructPERecord]) -> float:
    hits = 0
    for r in records:
        out = rewriter.rewrite(r.beautified_source_prompt, r.instruction, 1, seed=0)
        hits += bool(out) and states_target(out[0], r)
    return hits / max(1, len(records))


def train_sft(
    out_dir: str | Path,
    config: SftConfig,
    records: Sequence[InstructPERecord] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    train_records = list(records) if records is not None else generate_records(config.records, config.seed)
    if not train_records:
        raise InvalidParameters("No training records.", field="data")
    held = generate_records(config.held_out, config.seed + 1, split="heldout")
    pairs = _pairs(train_records, rng)
    tokenizer = _tokenizer((a + b for a, b in pairs), config.vocab)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden,
        intermediate_size=config.mlp,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model: Any = LlamaForCausalLM(model_config)
    encoded = []
    for source, target in pairs:
        a = tokenizer(source, add_special_tokens=False).input_ids
        b = [*tokenizer(target, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
        encoded.append((a, b))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)

    def rate(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - config.warmup) / max(1, config.steps - config.warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    model.train()
    started = time.perf_counter()
    ema: float | None = None
    for step in range(config.steps):
        batch = [encoded[rng.randrange(len(encoded))] for _ in range(config.batch)]
        width = max(len(a) + len(b) for a, b in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (a, b) in enumerate(batch):
            seq = a + b
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, len(a) : len(seq)] = torch.tensor(b)
            mask[row, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        value = float(loss.detach())
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        if progress is not None:
            progress(step + 1, config.steps, {"loss": ema})
    model.eval()
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    rewriter = TransformersPromptRewriter(str(folder), name="sft", model=model, tokenizer=tokenizer, max_new_tokens=64)
    summary = {
        "steps": config.steps,
        "train_minutes": round((time.perf_counter() - started) / 60, 2),
        "final_loss_ema": ema,
        "parameters": sum(p.numel() for p in model.parameters()),
        "records": len(train_records),
        "held_out_exact_match": exact_match(rewriter, held),
        "config": asdict(config),
    }
    (folder / "training.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary
