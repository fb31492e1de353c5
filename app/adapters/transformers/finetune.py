"""Fine-tuning a causal language model on chat records: a PEFT LoRA (the default) or every weight.

The loss is the next-token cross-entropy on the assistant's tokens only (its turns as the chat template writes
them, the end-of-turn token included); the system and user turns condition but are not learned, as in OpenAI's
fine-tuning and LLaMA-Factory's defaults. Records are shuffled per epoch by the seed and batched with right
padding. AdamW, a constant learning rate after a linear warm-up of 10 % of the steps (at most 20).

A checkpoint (the trainable weights, the optimizer, the step and the random state) is written every
``checkpoint_every`` steps, atomically; ``train`` started again with the same records and settings resumes from
it and reaches the very weights an uninterrupted run would have.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from app.adapters.training_state import resume_checkpoint, save_checkpoint, write_whole
from app.domain.errors import InvalidParameters, require
from app.domain.training import TrainingKind, TrainingSpec
from app.ports.training import Trainer, TrainOutcome

Messages = Sequence[dict[str, str]]
Progress = Callable[[int, int, float, float | None], None]  # step, total steps, its loss, a validation loss
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class FineTuneSettings:
    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 8
    lora_rank: int = 16  # 0: every weight (full fine-tuning)
    lora_alpha: int | None = None  # None: twice the rank
    seed: int = 0
    checkpoint_every: int = 20
    max_length: int = 512

    def __post_init__(self) -> None:
        require(
            (self.epochs >= 1, "epochs must be at least 1.", "epochs"),
            (self.learning_rate > 0, "learning_rate must be positive.", "learning_rate"),
            (1 <= self.batch_size <= 256, "batch_size must be 1 to 256.", "batch_size"),
            (0 <= self.lora_rank <= 256, "lora_rank must be 0 (full fine-tuning) to 256.", "lora_rank"),
        )


@dataclass(frozen=True)
class FineTuneResult:
    out_dir: str
    steps: int
    train_loss: float  # the mean loss of the last epoch
    resumed_from: int  # the step a checkpoint gave (0: a fresh start)


def assistant_labels(tokenizer: Any, messages: Messages, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids of the conversation through the chat template, and labels that are the ids on the assistant's
    turns and -100 elsewhere (cut to ``max_length``)."""
    ids: list[int] = []
    labels: list[int] = []
    for end in range(1, len(messages) + 1):
        if messages[end - 1]["role"] != "assistant":
            continue
        prompt = _template(tokenizer, messages[: end - 1], generation_prompt=True)
        full = _template(tokenizer, messages[:end], generation_prompt=False)
        if full[: len(prompt)] != prompt or full[: len(ids)] != ids:
            raise InvalidParameters("The model's chat template does not extend a conversation turn by turn.")
        labels += [-100] * (len(prompt) - len(ids)) + full[len(prompt) :]
        ids = full
    return ids[:max_length], labels[:max_length]


def _template(tokenizer: Any, messages: Messages, generation_prompt: bool) -> list[int]:
    if not messages:
        return []
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)
    ids: list[int] = tokenizer(str(text), add_special_tokens=False).input_ids
    return ids


def train(
    base: str,
    records: Sequence[Messages],
    out_dir: str,
    work_dir: str,
    settings: FineTuneSettings,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    validation: Sequence[Messages] = (),
) -> FineTuneResult:
    """Fine-tune the model folder ``base`` on ``records`` and save the adapter (or, full, the model and tokenizer)
    to ``out_dir``; checkpoints go to ``work_dir``. Raises ``InvalidParameters`` for records with no assistant
    turn; returns early (no ``out_dir``) when ``cancelled`` turns true, after a checkpoint of the step it reached.
    ``validation`` records are scored at the end of each epoch (their mean loss, reported with that step)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=os.path.isdir(base))
    examples = [assistant_labels(tokenizer, messages, settings.max_length) for messages in records]
    held = [assistant_labels(tokenizer, messages, settings.max_length) for messages in validation]
    for line, (_, labels) in enumerate(examples, start=1):
        if all(label == -100 for label in labels):
            raise InvalidParameters(f"Record {line} has no assistant turn to learn.", field="training_file")
    torch.manual_seed(settings.seed)
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, local_files_only=os.path.isdir(base))
    model = _trainable(model, settings)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=0.0)
    per_epoch = math.ceil(len(examples) / settings.batch_size)
    total = per_epoch * settings.epochs
    warmup = min(20, max(1, total // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
    fingerprint = _fingerprint(settings, len(examples))
    step = resumed = resume_checkpoint(work_dir, fingerprint, parameters, optimizer, schedule)
    losses: list[float] = []
    model.train()
    while step < total:
        epoch, index = divmod(step, per_epoch)
        order = list(range(len(examples)))
        random.Random(settings.seed * 1_000_003 + epoch).shuffle(order)
        batch = [examples[i] for i in order[index * settings.batch_size : (index + 1) * settings.batch_size]]
        loss = _step(model, batch, pad, optimizer, schedule)
        step += 1
        losses = (losses if index else []) + [loss]
        scored = _validation_loss(model, held, pad, settings.batch_size) if held and index == per_epoch - 1 else None
        if progress is not None:
            progress(step, total, loss, scored)
        stop = cancelled() and step < total
        if stop or step % settings.checkpoint_every == 0 or step == total:
            save_checkpoint(work_dir, fingerprint, step, parameters, optimizer, schedule)
        if stop:
            return FineTuneResult(out_dir, step, sum(losses) / len(losses), resumed)
    model.eval()
    _save(model, tokenizer, out_dir, settings)
    return FineTuneResult(out_dir, step, sum(losses) / len(losses) if losses else math.nan, resumed)


def _trainable(model: Any, settings: FineTuneSettings) -> Any:
    if settings.lora_rank == 0:
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in LORA_TARGETS if t in present]
    if not targets:
        raise InvalidParameters("The model has none of the projections a LoRA is put on (q_proj, v_proj, ...).")
    config = LoraConfig(
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha or 2 * settings.lora_rank,
        target_modules=targets,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _validation_loss(model: Any, held: list[tuple[list[int], list[int]]], pad: int, batch_size: int) -> float:
    """The mean loss of the held-out records (the model back in training mode after)."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(held), batch_size):
            batch = held[start : start + batch_size]
            ids, labels, mask = _tensors(batch, pad)
            total += float(model(input_ids=ids, attention_mask=mask, labels=labels).loss) * len(batch)
    model.train()
    return total / len(held)


def _tensors(batch: list[tuple[list[int], list[int]]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (tokens, targets) in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, : len(targets)] = torch.tensor(targets)
        mask[row, : len(tokens)] = 1
    return ids, labels, mask


def _step(model: Any, batch: list[tuple[list[int], list[int]]], pad: int, optimizer: Any, schedule: Any) -> float:
    ids, labels, mask = _tensors(batch, pad)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _fingerprint(settings: FineTuneSettings, records: int) -> dict[str, Any]:
    return {**asdict(settings), "records": records}


def _save(model: Any, tokenizer: Any, out_dir: str, settings: FineTuneSettings) -> None:
    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        if settings.lora_rank == 0:
            tokenizer.save_pretrained(folder)

    write_whole(out_dir, write)


class TransformersTrainer(Trainer):
    """The ``Trainer`` port for language models (an image LoRA is another trainer's)."""

    def train(
        self,
        spec: TrainingSpec,
        base_path: str,
        records: list[Any],
        out_dir: str,
        work_dir: str,
        report: Callable[[int, int, float, float | None], None],
        cancelled: Callable[[], bool],
        validation: list[list[dict[str, str]]] | None = None,
        samples: Callable[[int, list[str]], None] | None = None,
    ) -> TrainOutcome:
        if spec.kind is not TrainingKind.LLM_FINETUNE:
            raise InvalidParameters(f"This trainer fine-tunes language models, not {spec.kind.value}.", field="kind")
        settings = FineTuneSettings(
            epochs=spec.epochs,
            learning_rate=spec.learning_rate,
            batch_size=spec.batch_size,
            lora_rank=spec.lora_rank,
            seed=spec.seed,
            max_length=int(spec.extra.get("max_length", 512)),
        )
        result = train(base_path, records, out_dir, work_dir, settings, report, cancelled, validation or ())
        total = math.ceil(len(records) / settings.batch_size) * settings.epochs
        return TrainOutcome(result.steps, result.train_loss, result.resumed_from, result.steps >= total)
