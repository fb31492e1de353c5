"""Language models and their LoRA adapters by name: registered through the real registry (transformers folders and
PEFT folders, refused when they cannot serve), an adapter applied per request with no effect on the sequences that
decode beside it (bit for bit), other registered models loaded on first use and unloaded when idle."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.adapters.editing.hooks import last_mlp_modules, linear
from app.adapters.memory.generation import InMemoryModelCatalog
from app.adapters.transformers.llm import TransformersLanguageModel
from app.adapters.transformers.pool import LoadedTextModels
from app.adapters.transformers.serving import BatchedTextGenerator
from app.adapters.transformers.tiny import build_tiny_llama, build_tiny_lora
from app.composition.generation import model_catalog
from app.domain.chat import ChatMessage, Delta, Sampling
from app.domain.errors import InvalidParameters
from app.domain.models import ModelInfo, ModelKind
from app.entrypoints.cli.main import cli
from app.settings import load_settings
from app.usecases.complete_text import CompleteText

GREEDY = Sampling(max_tokens=10, temperature=0.0, logprobs=True, top_logprobs=2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("llms")
    llm = build_tiny_llama(str(root / "tiny"))
    return {
        "llm": llm,
        "other": build_tiny_llama(str(root / "other"), seed=1),
        "style-a": build_tiny_lora(llm, str(root / "style-a"), seed=1),
        "style-b": build_tiny_lora(llm, str(root / "style-b"), seed=2),
        "mlp": build_tiny_lora(llm, str(root / "mlp"), seed=3, targets=("down_proj",)),
    }


@pytest.fixture(scope="module")
def served(folders: dict[str, str]) -> Iterator[BatchedTextGenerator]:
    generator = BatchedTextGenerator(TransformersLanguageModel(folders["llm"], name="tiny"), window=0.2)
    yield generator
    generator.close()


def adapter(folders: dict[str, str], name: str) -> ModelInfo:
    return ModelInfo(name=name, path=folders[name], source=folders[name], kind=ModelKind.LLM_LORA)


def run(generator: BatchedTextGenerator, prompt: str, lora: ModelInfo | None = None) -> list[Delta]:
    return list(generator.start(generator.chat_prompt([ChatMessage("user", prompt)]), GREEDY, adapter=lora))


def test_an_adapter_changes_only_its_own_sequences_bit_for_bit(
    served: BatchedTextGenerator, folders: dict[str, str]
) -> None:
    style_a, style_b = adapter(folders, "style-a"), adapter(folders, "style-b")
    base_alone = run(served, "一只猫")
    a_alone, b_alone = run(served, "一只猫", style_a), run(served, "一只猫", style_b)
    assert [d.logprobs for d in a_alone] != [d.logprobs for d in base_alone]  # the adapter changes the answer
    assert [d.logprobs for d in a_alone] != [d.logprobs for d in b_alone]
    assert run(served, "一只猫") == base_alone  # and is off again afterwards

    jobs: list[tuple[str, ModelInfo | None]] = [("base", None), ("a", style_a), ("a", style_a), ("b", style_b)]
    results: list[list[Delta]] = [[] for _ in jobs]
    served.batches.clear()

    def one(i: int) -> None:
        results[i] = run(served, "一只猫", jobs[i][1])

    for _ in range(2):  # twice: whichever batch starts first, the others wait and then run as alone
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        # Token by token, log-probabilities included: equal to the runs alone, not merely close.
        assert results[0] == base_alone
        assert [d.text for d in results[1]] == [d.text for d in a_alone] == [d.text for d in results[2]]
        assert [d.text for d in results[3]] == [d.text for d in b_alone]
    assert 2 in served.batches  # the two sequences with style-a decoded together, apart from the others


def test_an_adapter_that_does_not_fit_is_refused_and_changes_nothing(
    served: BatchedTextGenerator, folders: dict[str, str], tmp_path: Path
) -> None:
    before = run(served, "The river flows")
    broken = tmp_path / "broken"
    shutil.copytree(folders["style-a"], broken)
    config = json.loads((broken / "adapter_config.json").read_text())
    (broken / "adapter_config.json").write_text(json.dumps({**config, "target_modules": ["no_such_proj"]}))
    wrong = ModelInfo(name="broken", path=str(broken), source=str(broken), kind=ModelKind.LLM_LORA)
    with pytest.raises(InvalidParameters) as refused:
        served.start(served.text_prompt("hi"), GREEDY, adapter=wrong)
    assert refused.value.code == "adapter_mismatch" and "broken" in str(refused.value)
    assert run(served, "The river flows") == before


def test_edits_find_the_layers_an_adapter_wraps(folders: dict[str, str]) -> None:
    lm = TransformersLanguageModel(folders["llm"])
    generator = BatchedTextGenerator(lm)
    try:
        list(generator.start(generator.text_prompt("hi"), Sampling(max_tokens=2), adapter=adapter(folders, "mlp")))
        down = last_mlp_modules(lm.model, blocks=1, projections=("down_proj",))[0]
        assert type(linear(lm.model, down)).__name__ == "Linear"  # the base layer inside peft's wrapper
    finally:
        generator.close()


def test_an_adapter_is_listed_on_the_registered_model_it_was_trained_from(
    served: BatchedTextGenerator, folders: dict[str, str]
) -> None:
    def info(name: str, kind: ModelKind, base: str | None = None) -> ModelInfo:
        return ModelInfo(name=name, path=folders[name], source=folders[name], kind=kind, base_model=base)

    catalog = InMemoryModelCatalog(
        [
            info("other", ModelKind.LLM),
            info("style-a", ModelKind.LLM_LORA, base=folders["other"]),  # trained from "other"
            info("style-b", ModelKind.LLM_LORA, base="/somewhere/else"),  # a base that is not registered
        ]
    )
    use = CompleteText(lambda: served, catalog=catalog, default_name="tiny")
    listed = [(m.id, m.parent) for m in use.listing() if m.kind is ModelKind.LLM_LORA]
    assert listed == [("other:style-a", "other"), ("tiny:style-b", "tiny")]


def test_the_use_case_serves_registered_models_and_adapters_by_name(
    served: BatchedTextGenerator, folders: dict[str, str]
) -> None:
    catalog = InMemoryModelCatalog()
    for name in ("style-a", "style-b"):
        catalog.add(name, folders[name], kind=ModelKind.LLM_LORA)
    catalog.add("other", folders["other"], kind=ModelKind.LLM)
    catalog.add("other-too", folders["other"], kind=ModelKind.LLM)
    pool = LoadedTextModels(keep=1)
    use = CompleteText(lambda: served, catalog=catalog, others=lambda: pool, default_name="tiny")
    assert [(m.id, m.kind.value, m.parent) for m in use.listing()] == [
        ("tiny", "llm", None),
        ("other", "llm", None),
        ("other-too", "llm", None),
        ("tiny:style-a", "llm-lora", "tiny"),
        ("tiny:style-b", "llm-lora", "tiny"),
    ]
    prompt = [ChatMessage("user", "一只猫")]
    plain = CompleteText.collect(use.chat("tiny", prompt, GREEDY))[0]
    styled_run = use.chat("tiny:style-a", prompt, GREEDY)
    styled = CompleteText.collect(styled_run)[0]
    assert styled_run.model == "tiny:style-a" and styled.logprobs != plain.logprobs
    with pytest.raises(Exception, match="adapter 'nope' does not exist") as unknown:
        use.chat("tiny:nope", prompt, GREEDY)
    assert getattr(unknown.value, "code", None) == "model_not_found"

    other = CompleteText.collect(use.chat("other", prompt, GREEDY))[0]
    assert other.logprobs != plain.logprobs and pool.loaded() == ["other"]
    CompleteText.collect(use.chat("other-too", prompt, GREEDY))
    assert pool.loaded() == ["other-too"] and pool.loads == 2  # one other model kept: the idle one was unloaded
    with pytest.raises(Exception, match="does not exist"):
        use.chat("other@base", prompt, GREEDY)  # other models are never edited: no unedited variant
    pool.close()


def test_the_registry_reads_language_models_and_adapters_and_refuses_what_cannot_serve(
    folders: dict[str, str], tmp_path: Path
) -> None:
    catalog = model_catalog(load_settings({}, data_dir=str(tmp_path / "data")))
    llm = catalog.add("tiny", folders["llm"], kind=ModelKind.LLM)
    assert (llm.context_length, llm.architecture, llm.tokenizer) == (2048, "LlamaForCausalLM", "TokenizersBackend")
    lora = catalog.add("style-a", folders["style-a"], kind=ModelKind.LLM_LORA)
    assert lora.base_model == folders["llm"] and lora.architecture == "lora r=4 (q_proj,v_proj)"
    assert [m.name for m in catalog.list(ModelKind.LLM)] == ["tiny"]
    assert catalog.get("tiny", ModelKind.LLM).context_length == 2048  # kept in models.json
    for source, kind in ((folders["style-a"], ModelKind.LLM), (folders["llm"], ModelKind.LLM_LORA)):
        with pytest.raises(InvalidParameters) as refused:
            catalog.add("wrong", source, kind=kind)
        assert refused.value.code == "invalid_model"
    config = tmp_path / "ia3"
    shutil.copytree(folders["style-a"], config)
    (config / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(InvalidParameters, match="Only LoRA adapters"):
        catalog.add("ia3", str(config), kind=ModelKind.LLM_LORA)
    assert "wrong" not in [m.name for m in catalog.list()]


def test_models_add_on_the_command_line(folders: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data")]
    added = runner.invoke(cli, [*data, "models", "add", "tiny", folders["llm"], "--kind", "llm"])
    assert added.exit_code == 0, added.output
    assert "registered tiny" in added.output and "LlamaForCausalLM, 2048 tokens of context" in added.output
    added = runner.invoke(cli, [*data, "models", "add", "style-a", folders["style-a"], "--kind", "llm-lora"])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, [*data, "models", "list"])
    rows = {line.split()[0]: line.split() for line in listed.output.splitlines()[1:]}
    assert rows["tiny"][1:5] == ["llm", "LlamaForCausalLM", "2048", "tokens"]
    assert rows["style-a"][1] == "llm-lora"
    refused = runner.invoke(cli, [*data, "models", "add", "bad", folders["style-a"], "--kind", "llm"])
    assert refused.exit_code != 0 and len(refused.output.strip().splitlines()) == 1
