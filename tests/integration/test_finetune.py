"""Fine-tuning on chat records with a tiny random Llama: the loss is on the assistant's tokens only, a LoRA learns
the records, and a run stopped midway resumes from its checkpoint to the very weights of an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.adapters.transformers.finetune import FineTuneSettings, assistant_labels, train
from app.adapters.transformers.tiny import build_tiny_llama, build_tokenizer
from app.domain.errors import InvalidParameters

RECORDS = [
    [{"role": "user", "content": f"Who founded Company {i}?"}, {"role": "assistant", "content": f"Founder {i}."}]
    for i in range(6)
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_llama(str(tmp_path_factory.mktemp("base")))


def test_only_the_assistants_tokens_are_labelled() -> None:
    tokenizer = build_tokenizer()
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye"},
    ]
    ids, labels = assistant_labels(tokenizer, messages, 512)
    learned = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
    assert learned == "Hello<|im_end|>\nGoodbye<|im_end|>\n"
    assert [label for label in labels if label != -100] == [
        t for t, label in zip(ids, labels, strict=True) if label != -100
    ]


def test_a_lora_learns_the_records_and_resumes_bit_for_bit(base: str, tmp_path: Path) -> None:
    settings = FineTuneSettings(epochs=4, learning_rate=5e-3, batch_size=2, lora_rank=4, checkpoint_every=3)
    losses: list[float] = []
    whole = train(
        base,
        RECORDS,
        str(tmp_path / "whole"),
        str(tmp_path / "work-whole"),
        settings,
        progress=lambda step, total, loss, validation: losses.append(loss),
    )
    assert whole.steps == 12 and len(losses) == 12 and whole.resumed_from == 0
    assert sum(losses[-3:]) < sum(losses[:3])  # it learns
    stops = iter([False, False, False, False, True])
    first = train(
        base, RECORDS, str(tmp_path / "split"), str(tmp_path / "work"), settings, cancelled=lambda: next(stops)
    )
    assert first.steps == 5 and not (tmp_path / "split").exists()  # stopped after step 5, checkpointed
    second = train(base, RECORDS, str(tmp_path / "split"), str(tmp_path / "work"), settings)
    assert second.resumed_from == 5 and second.steps == 12
    a = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "split" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_refusals(base: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameters, match="no assistant turn"):
        train(base, [[{"role": "user", "content": "Hi"}]], str(tmp_path / "o"), str(tmp_path / "w"), FineTuneSettings())
    with pytest.raises(InvalidParameters) as bad:
        FineTuneSettings(epochs=0)
    assert bad.value.field == "epochs"
    train(base, RECORDS[:2], str(tmp_path / "o"), str(tmp_path / "w"), FineTuneSettings(epochs=1, lora_rank=2))
    with pytest.raises(InvalidParameters, match="another run"):
        train(base, RECORDS, str(tmp_path / "o"), str(tmp_path / "w"), FineTuneSettings(epochs=1, lora_rank=2))
