"""The causal-LM prompt rewriter on a tiny random Llama: the input format, determinism, and a session turn."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.adapters.rewriting.causal_lm import TransformersPromptRewriter, plain_prompt
from app.adapters.transformers.tiny import build_tiny_llama
from app.entrypoints.library import Atelier


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_llama(str(tmp_path_factory.mktemp("rewriter") / "tiny"))


def test_candidates_are_single_lines_greedy_first_and_seeded(tiny: str) -> None:
    rewriter = TransformersPromptRewriter(tiny, max_new_tokens=12)
    a = rewriter.rewrite("一个红色的圆形", "把圆形换成蓝色", 4, seed=1)
    assert len(a) == 4 and all("\n" not in c for c in a)
    assert rewriter.rewrite("一个红色的圆形", "把圆形换成蓝色", 4, seed=1) == a  # seeded
    b = rewriter.rewrite("一个红色的圆形", "把圆形换成蓝色", 4, seed=2)
    assert b[0] == a[0]  # the greedy rewrite does not depend on the seed
    assert rewriter.rewrite("一个红色的圆形", "把圆形换成蓝色", 1, seed=5) == a[:1]


def test_input_format_uses_the_chat_template_or_the_plain_one(tiny: str) -> None:
    rewriter = TransformersPromptRewriter(tiny, max_new_tokens=4)
    chat = rewriter.input_text("一个红色的圆形", "把圆形换成蓝色")
    assert "Request: 把圆形换成蓝色" in chat and "Output:" not in chat
    rewriter.tokenizer.chat_template = None
    plain = TransformersPromptRewriter(tiny, model=rewriter.model, tokenizer=rewriter.tokenizer)
    assert plain.input_text(" 一个红色的圆形 ", "把圆形换成蓝色") == plain_prompt("一个红色的圆形", "把圆形换成蓝色")
    assert plain.input_text("a", "b").endswith("Input: a\nRequest: b\nOutput:")


def test_a_session_turn_with_a_model_folder_as_the_rewriter(tiny: str, tmp_path: Path) -> None:
    with Atelier.open(data_dir=str(tmp_path), profile="test", prompt_rewriter=tiny) as atelier:
        session = atelier.prompts.start("一个红色的圆形在中间")
        turn = atelier.prompts.turn(session.id, "把圆形换成蓝色", n=3, k=3, seed=0, steps=2)
        assert 1 <= len(turn.candidates) <= 3  # random weights: whatever it wrote, de-duplicated
        assert atelier.container.prompt_rewriter().name == "tiny"
        assert turn.note is None or turn.candidates[0].source == "current"
