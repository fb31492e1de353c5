"""A1111 prompt syntax: attention weights, escapes, unbalanced brackets, BREAK and LoRA tags."""

from __future__ import annotations

import pytest

from app.domain.prompt_syntax import BREAK, ParsedPrompt, PromptFragment, parse_prompt


def _pairs(parsed: ParsedPrompt) -> list[tuple[str, float]]:
    return [(f.text, round(f.weight, 6)) for f in parsed.fragments]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("a ((word))", [("a ", 1.0), ("word", 1.21)]),
        ("a [word]", [("a ", 1.0), ("word", round(1 / 1.1, 6))]),
        ("a (word:1.5)", [("a ", 1.0), ("word", 1.5)]),
        ("a (word:0.25)", [("a ", 1.0), ("word", 0.25)]),
        ("a (word: .5 )", [("a ", 1.0), ("word", 0.5)]),
        (
            "a (house:1.3) [[in]] the woods",
            [("a ", 1.0), ("house", 1.3), (" ", 1.0), ("in", round(1 / 1.21, 6)), (" the woods", 1.0)],
        ),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.573),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641),
                (".", 1.1),
            ],
        ),
    ],
)
def test_a1111_documented_examples(prompt: str, expected: list[tuple[str, float]]) -> None:
    assert _pairs(parse_prompt(prompt)) == expected


def test_nesting_multiplies_explicit_weights() -> None:
    assert _pairs(parse_prompt("((cat:2):1.5) [dog:0.5]")) == [("cat", 3.0), (" ", 1.0), ("dog:0.5", 0.909091)]
    assert _pairs(parse_prompt("((a) b)")) == [("a", 1.21), (" b", 1.1)]


def test_adjacent_fragments_of_equal_weight_are_merged() -> None:
    assert parse_prompt("(unnecessary)(parens)").fragments == (PromptFragment("unnecessaryparens", 1.1),)
    assert parse_prompt("a [(b)] c").fragments == (PromptFragment("a b c", 1.0),)


def test_escaped_brackets_are_literal() -> None:
    assert _pairs(parse_prompt(r"\(literal\]")) == [("(literal]", 1.0)]
    assert _pairs(parse_prompt(r"a \[b\] (\(c\))")) == [("a [b] ", 1.0), ("(c)", 1.1)]
    assert parse_prompt(r"back\\slash and a\b").plain_text == r"back\slash and a\b"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("a ((b", [("a ", 1.0), ("b", 1.21)]),
        ("[a (b", [("a ", 0.909091), ("b", 1.0)]),
        ("x) y] z:1.2)", [("x) y] z:1.2)", 1.0)]),
    ],
)
def test_unbalanced_brackets(prompt: str, expected: list[tuple[str, float]]) -> None:
    assert _pairs(parse_prompt(prompt)) == expected


@pytest.mark.parametrize("prompt", ["(cat:abc)", "(cat:1.2.3)", "(cat:)"])
def test_bad_weights_are_literal_text(prompt: str) -> None:
    parsed = parse_prompt(prompt)
    assert len(parsed.fragments) == 1
    assert parsed.fragments[0].text == prompt[1:-1]
    assert parsed.fragments[0].weight == pytest.approx(1.1)


def test_loras_are_removed_with_or_without_weight() -> None:
    parsed = parse_prompt("a cat <lora:ink_style-v1.5:0.8>, (sunset:1.2)<lora:poem>")
    assert parsed.loras == (("ink_style-v1.5", 0.8), ("poem", 1.0))
    assert _pairs(parsed) == [("a cat , ", 1.0), ("sunset", 1.2)]
    assert parsed.plain_text == "a cat , sunset"
    assert parse_prompt("<lora:x:-0.5>").loras == (("x", -0.5),)


def test_only_lora_tags_are_extracted() -> None:
    parsed = parse_prompt("<lyco:x:0.5> <lora:bad name:1> <lora:y:abc>")
    assert parsed.loras == ()
    assert parsed.plain_text == "<lyco:x:0.5> <lora:bad name:1> <lora:y:abc>"


def test_chinese_text_full_width_punctuation_and_cjk_lora() -> None:
    parsed = parse_prompt("一只（红色的）猫，<lora:水墨:0.6>(草地:1.3)上，[雾]")
    assert parsed.loras == (("水墨", 0.6),)
    assert _pairs(parsed) == [("一只（红色的）猫，", 1.0), ("草地", 1.3), ("上，", 1.0), ("雾", 0.909091)]
    assert parsed.plain_text == "一只（红色的）猫，草地上，雾"
    only_full_width = "（（重要））的词，"
    assert parse_prompt(only_full_width).fragments == (PromptFragment(only_full_width, 1.0),)


def test_break_is_a_separate_fragment() -> None:
    parsed = parse_prompt("a red cat BREAK (a green dog) BREAK")
    assert parsed.fragments == (PromptFragment("a red cat", 1.0), BREAK, PromptFragment("a green dog", 1.1), BREAK)
    assert parsed.plain_text == "a red cat a green dog "
    assert BREAK.is_break and not parsed.fragments[0].is_break


def test_break_must_be_an_uppercase_word() -> None:
    for prompt in ("a break b", "BREAKFAST", "aBREAK", "猫BREAK狗"):
        assert all(not f.is_break for f in parse_prompt(prompt).fragments), prompt
    assert [f.is_break for f in parse_prompt("猫 BREAK 狗").fragments] == [False, True, False]


def test_break_inside_brackets_still_breaks_and_keeps_its_neighbours_weights() -> None:
    assert parse_prompt("(a BREAK b:1.5)").fragments == (PromptFragment("a", 1.5), BREAK, PromptFragment("b", 1.5))


def test_empty_prompt() -> None:
    assert parse_prompt("") == ParsedPrompt(fragments=(), loras=(), plain_text="")
    assert parse_prompt("()[]").fragments == ()
