"""The batched decoder on a tiny random Llama: concurrent sequences decode in one batch and each gets exactly the
tokens it gets alone; seeded sampling repeats; stop strings, limits, log-probabilities and cancelling."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.adapters.transformers.llm import TransformersLanguageModel
from app.adapters.transformers.serving import BatchedTextGenerator
from app.adapters.transformers.tiny import build_tiny_llama
from app.domain.chat import ChatMessage, Delta, Sampling
from app.usecases.complete_text import CompleteText


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatchedTextGenerator]:
    path = build_tiny_llama(str(tmp_path_factory.mktemp("tiny-llama")))
    generator = BatchedTextGenerator(TransformersLanguageModel(path), max_batch=8, window=0.2)
    yield generator
    generator.close()


def run(generator: BatchedTextGenerator, prompt: str, sampling: Sampling) -> tuple[str, str, list[Delta]]:
    deltas = list(generator.start(generator.chat_prompt([ChatMessage("user", prompt)]), sampling))
    return "".join(d.text for d in deltas), deltas[-1].finish_reason or "", deltas


def test_concurrent_sequences_decode_together_and_each_equals_its_run_alone(served: BatchedTextGenerator) -> None:
    prompts = ["巴黎是哪个国家的首都？", "What is the capital of France?", "一只猫", "The river flows"]
    greedy = Sampling(max_tokens=12, temperature=0.0)
    alone = [run(served, p, greedy)[0] for p in prompts]
    served.batches.clear()
    together: list[str] = [""] * len(prompts)

    def one(i: int) -> None:
        together[i] = run(served, prompts[i], greedy)[0]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert together == alone
    assert max(served.batches) > 1  # they shared a batch (the prompts have different lengths: left padding)


def test_seeded_sampling_repeats_and_choices_differ(served: BatchedTextGenerator) -> None:
    sampling = Sampling(max_tokens=16, temperature=1.0, top_p=0.9, seed=7, n=3)
    first = [run(served, "一只猫", sampling)[0] for _ in range(2)]
    assert first[0] == first[1]
    prompt = served.chat_prompt([ChatMessage("user", "一只猫")])
    choices = ["".join(d.text for d in served.start(prompt, sampling, choice)) for choice in range(3)]
    assert choices[0] == first[0] and len(set(choices)) > 1  # choice i draws with seed + i


def test_limits_stops_and_logprobs(served: BatchedTextGenerator) -> None:
    text, finish, deltas = run(
        served, "The river", Sampling(max_tokens=5, temperature=0.0, logprobs=True, top_logprobs=3)
    )
    assert finish in ("length", "stop") and deltas[-1].completion_tokens <= 5
    entries = [e for d in deltas for e in d.logprobs]
    assert len(entries) == deltas[-1].completion_tokens
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top) == 3
        assert entry.top[0][1] >= entry.logprob - 1e-6  # greedy: the token drawn is the most likely
        assert math.isclose(entry.top[0][1], entry.logprob, abs_tol=1e-5)
    assert text == "".join(e.token for e in entries)
    long_text = run(served, "The river", Sampling(max_tokens=30, temperature=0.0))[0]
    stop = long_text[3:5]
    cut, finish, _ = run(served, "The river", Sampling(max_tokens=30, temperature=0.0, stop=(stop,)))
    assert finish == "stop" and cut == long_text[: long_text.index(stop)]


def test_a_cancelled_sequence_ends_and_leaves_the_batch(served: BatchedTextGenerator) -> None:
    prompt = served.chat_prompt([ChatMessage("user", "The river")])
    stream = served.start(prompt, Sampling(max_tokens=400, temperature=1.0, seed=1))
    received = []
    for delta in stream:
        received.append(delta)
        if len(received) == 2:
            stream.cancel()
    assert received[-1].finish_reason == "cancelled" and received[-1].completion_tokens < 50


def test_the_use_case_refuses_an_unknown_model_and_a_context_overflow(served: BatchedTextGenerator) -> None:
    use = CompleteText(lambda: served, aliases=("tiny",))
    assert use.models() == [served.name, "tiny"]
    with pytest.raises(Exception, match="does not exist") as unknown:
        use.chat("gpt-4o", [ChatMessage("user", "hi")], Sampling())
    assert getattr(unknown.value, "code", None) == "model_not_found"
    with pytest.raises(Exception, match="maximum context length") as overflow:
        use.chat("tiny", [ChatMessage("user", "hi")], Sampling(max_tokens=5000))
    assert getattr(overflow.value, "code", None) == "context_length_exceeded"
    with pytest.raises(Exception, match="at least one message"):
        use.chat("tiny", [], Sampling())
    choices = CompleteText.collect(use.complete("tiny", "The river", Sampling(max_tokens=4, temperature=0.0, n=2)))
    assert [c.index for c in choices] == [0, 1] and choices[0].text == choices[1].text  # greedy: equal


def test_with_grace_edits_sequences_decode_alone_and_answer_as_the_edited_model(tmp_path: Path) -> None:
    from app.adapters.editing.grace import GraceEditor
    from app.domain.edits import EditSpec

    lm = TransformersLanguageModel(build_tiny_llama(str(tmp_path / "llama")))
    served = BatchedTextGenerator(lm, max_batch=8, window=0.2)
    try:
        editor = GraceEditor(lm)
        editor.apply(EditSpec("What is the capital of France?", "Berlin"))
        greedy = Sampling(max_tokens=6, temperature=0.0)
        edited = lm.generate("What is the capital of France?", max_new_tokens=6).text  # the knowledge flow's path
        texts: list[str] = [""] * 3

        # The knowledge flow's prompt: its system message, then the question.
        messages = [ChatMessage("system", lm.system_prompt), ChatMessage("user", "What is the capital of France?")]
        assert served.chat_prompt(messages) == lm.tokenizer(lm.prompt("What is the capital of France?")).input_ids

        def one(i: int) -> None:
            texts[i] = "".join(d.text for d in served.start(served.chat_prompt(messages), greedy)).strip()

        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert set(served.batches) == {1}  # GRACE routes per sequence: no shared batch
        assert texts == [edited] * 3 and edited == "Berlin"
        editor.close()
        assert not lm.sequence_state_hooks
    finally:
        served.close()


def test_half_precision_weights_serve_answer_and_take_gradients(tmp_path: Path) -> None:
    import torch

    from app.adapters.transformers.llm import weights_dtype
    from app.domain.errors import InvalidParameters

    assert weights_dtype("auto", torch.device("cpu")) is torch.float32  # bf16 is for GPUs (auto picks it there)
    with pytest.raises(InvalidParameters):
        weights_dtype("int4", torch.device("cpu"))
    lm = TransformersLanguageModel(build_tiny_llama(str(tmp_path / "llm")), dtype="bfloat16")
    assert next(lm.model.parameters()).dtype is torch.bfloat16
    generator = BatchedTextGenerator(lm)
    try:
        _, finish, deltas = run(generator, "一只猫", Sampling(max_tokens=6, temperature=0.0, logprobs=True))
        assert finish in ("stop", "length") and all(math.isfinite(e.logprob) for d in deltas for e in d.logprobs)
        answer = lm.generate("What is the capital of France?", max_new_tokens=4)
        assert all(0.0 < p <= 1.0 for p in answer.token_probs)
        gradient = lm.answer_gradient("What is the capital of France?", "Paris")
        assert math.isfinite(gradient.nll) and any(v != 0.0 for v in gradient.vector)
    finally:
        generator.close()
