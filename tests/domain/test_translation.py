"""Translation rules and policy, with a scripted in-memory translator (no network)."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stargraph.domain.errors import TranslationUnavailable
from stargraph.domain.jobs import TranslationState
from stargraph.domain.translation import (
    BadAnswer,
    PromptTranslator,
    TranslatorUnavailable,
    clean_answer,
    enhance,
    needs_translation,
    normalize_punctuation,
    split_prompt,
)

WORDS = {"长发": "long hair", "少女": "girl", "微笑": "smile", "猫": "cat", "夕阳": "sunset"}


class ScriptedTranslator:
    """Answers from `WORDS`, or from `answers` (consumed in order) when given."""

    version = "scripted|1"

    def __init__(self, *answers: str | Exception, delay: asyncio.Event | None = None) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, bool]] = []
        self.delay = delay

    async def translate(self, text: str, *, strict: bool = False) -> str:
        self.calls.append((text, strict))
        if self.delay is not None:
            await self.delay.wait()
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return WORDS.get(text, "thing")


class DictCache:
    def __init__(self) -> None:
        self.data: dict[tuple[str, str], str] = {}

    async def get(self, namespace: str, text: str) -> str | None:
        return self.data.get((namespace, text))

    async def put(self, namespace: str, text: str, translation: str) -> None:
        self.data[(namespace, text)] = translation


# ---- detection, normalisation, splitting ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a cat, (dog:1.2), <lora:x:0.8>", False),
        ("masterpiece，best quality（8k）", False),  # full-width punctuation only
        ("ｆｕｌｌｗｉｄｔｈ letters", False),
        ("<lora:中文名:0.8>, a cat", False),  # Chinese only inside a LoRA tag
        ("embedding:猫咪, a cat", False),
        ("一只猫", True),
        ("a cat, 长发", True),
        ("(微笑:1.2)", True),
        ("𠀀", True),  # CJK extension B
    ],
)
def test_needs_translation(text: str, expected: bool) -> None:
    assert needs_translation(text) is expected


def test_full_width_punctuation_is_normalised() -> None:
    assert normalize_punctuation("长发，少女（微笑：1.2）【猫】；夕阳。") == (
        "长发, 少女(微笑:1.2)[猫]; 夕阳. "
    )
    assert normalize_punctuation("“引号”　ＡＢＣ１２３！") == '"引号" ABC123!'


@given(st.text())
def test_splitting_loses_nothing(text: str) -> None:
    assert "".join(p.text for p in split_prompt(text)) == text


def test_only_chinese_text_pieces_go_to_the_model() -> None:
    pieces = split_prompt("1girl, 长发 少女, (微笑:1.2), <lora:中文:0.8>, \\(猫\\)")
    assert [p.text for p in pieces if p.translate] == ["长发 少女", "微笑", "猫"]


# ---- checking answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "clean"),
    [
        ("long hair", "long hair"),
        ("  long hair  ", "long hair"),
        ('Sure! Here is the translation: "long hair"', "long hair"),
        ("Here's the English translation: long hair", "long hair"),
        ("Translation: long hair", "long hair"),
        ("English: 'long hair'", "long hair"),
        ("“long hair”", "long hair"),
        ("```long hair```", "long hair"),
        ("long hair.", "long hair"),
    ],
)
def test_chatter_around_an_answer_is_removed(answer: str, clean: str) -> None:
    assert clean_answer("长发", answer) == clean


def test_short_answers_that_look_like_chatter_words_are_fine() -> None:
    assert clean_answer("确定", "sure") == "sure"
    assert clean_answer("当然", "Of course") == "Of course"


@pytest.mark.parametrize(
    "answer",
    [
        "",
        '""',
        "长发",
        "long 头发",
        "long hair\nNote: hair can be long.",
        "I'm sorry, I cannot help with that.",
        "Sure, long hair",
        "As an AI model I can translate this for you",
        "The translation of this text is long hair",
        "x" * 200,
    ],
)
def test_unusable_answers_are_rejected(answer: str) -> None:
    with pytest.raises(BadAnswer):
        clean_answer("长发", answer)


# ---- enhancement ------------------------------------------------------------------------

PREFIX = "(8k, best quality, masterpiece), "
SUFFIX = ", bad face, bad finger, bad arm, bad leg"


def test_enhance_adds_prefix_and_suffix_exactly_once() -> None:
    positive, negative = enhance("a cat", "blurry", PREFIX, SUFFIX)
    assert positive == PREFIX + "a cat"
    assert negative == "blurry" + SUFFIX
    assert enhance(positive, negative, PREFIX, SUFFIX) == (positive, negative)


def test_enhance_with_no_negative_gives_the_bare_suffix() -> None:
    assert enhance("a cat", "", PREFIX, SUFFIX)[1] == "bad face, bad finger, bad arm, bad leg"
    assert enhance("a cat", "blurry, ", PREFIX, SUFFIX)[1] == "blurry" + SUFFIX


# ---- the policy -------------------------------------------------------------------------


async def test_english_prompts_never_reach_the_model() -> None:
    model = ScriptedTranslator()
    outcome = await PromptTranslator(model, DictCache()).translate("a cat，(dog:1.2)")
    assert outcome.state is TranslationState.NOT_NEEDED
    assert outcome.text == "a cat, (dog:1.2)"
    assert outcome.translated is None
    assert model.calls == []


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_text_is_left_as_it_is_and_never_translated(text: str) -> None:
    """What lets the translator pass ASCII prompts on without looking at them."""
    assert normalize_punctuation(text) == text
    assert not any(piece.translate for piece in split_prompt(text))
    assert not needs_translation(text)


async def test_chinese_segments_are_translated_and_syntax_kept() -> None:
    model = ScriptedTranslator()
    prompt = "1girl，长发，（微笑：1.2），<lora:中文:0.8>，[猫|dog]，\\(夕阳\\)"
    outcome = await PromptTranslator(model, None).translate(prompt)
    assert outcome.state is TranslationState.TRANSLATED
    assert outcome.text == (
        "1girl, long hair, (smile:1.2), <lora:中文:0.8>, [cat|dog], \\(sunset\\)"
    )
    assert outcome.translated == outcome.text
    assert [text for text, _ in model.calls] == ["长发", "微笑", "猫", "夕阳"]


async def test_a_repeated_segment_is_asked_once() -> None:
    model = ScriptedTranslator()
    outcome = await PromptTranslator(model, None).translate("猫, (猫:1.3), 猫")
    assert outcome.text == "cat, (cat:1.3), cat"
    assert model.calls == [("猫", False)]


async def test_cached_segments_skip_the_model() -> None:
    cache = DictCache()
    translator = PromptTranslator(ScriptedTranslator(), cache)
    await translator.translate("长发, 少女")
    second_model = ScriptedTranslator()
    again = PromptTranslator(second_model, cache)
    outcome = await again.translate("少女，长发")
    assert outcome.text == "girl, long hair"
    assert second_model.calls == []
    assert (again.stats.cache_hits, again.stats.cache_misses) == (2, 0)


async def test_a_bad_answer_is_retried_once_with_the_strict_prompt() -> None:
    model = ScriptedTranslator("长发 long", "long hair")
    outcome = await PromptTranslator(model, None).translate("长发")
    assert outcome.text == "long hair"
    assert model.calls == [("长发", False), ("长发", True)]


async def test_two_bad_answers_refuse_by_default() -> None:
    model = ScriptedTranslator("长发", "还是长发")
    translator = PromptTranslator(model, DictCache())
    with pytest.raises(TranslationUnavailable) as caught:
        await translator.translate("长发")
    assert caught.value.code == "TRANSLATION_UNAVAILABLE"
    assert len(model.calls) == 2
    assert translator.stats.failures == 1


async def test_passthrough_sends_the_original_and_says_so() -> None:
    cache = DictCache()
    model = ScriptedTranslator(TranslatorUnavailable("down"))
    outcome = await PromptTranslator(model, cache, "passthrough").translate("长发，少女")
    assert outcome.state is TranslationState.PASSTHROUGH
    assert outcome.text == "长发, 少女"
    assert outcome.translated is None
    assert cache.data == {}  # failures are not cached


async def test_an_unavailable_model_refuses_with_the_error_policy() -> None:
    model = ScriptedTranslator(TranslatorUnavailable("connection refused"))
    with pytest.raises(TranslationUnavailable):
        await PromptTranslator(model, None, "error").translate("猫")


async def test_the_whole_translation_has_a_deadline() -> None:
    never = asyncio.Event()
    model = ScriptedTranslator(delay=never)
    slow = PromptTranslator(model, None, "passthrough", timeout_s=0.05)
    outcome = await slow.translate("猫")
    assert outcome.state is TranslationState.PASSTHROUGH
    with pytest.raises(TranslationUnavailable):
        await PromptTranslator(model, None, "error", timeout_s=0.05).translate("猫")


SD_SYNTAX = re.compile(r"<[^<>\n]*>|\\.|[()\[\]{}|,:;\n]")
TOKENS = st.sampled_from(
    ["长发", "少女", "a cat", " ", "(", ")", "[", "]", "|", ",", ":1.2", "<lora:名字:0.8>", "\\("]
)


@given(st.lists(TOKENS, min_size=1, max_size=20))
def test_the_model_cannot_break_weights_tags_or_commas(tokens: list[str]) -> None:
    prompt = "".join(tokens)

    async def run() -> str:
        outcome = await PromptTranslator(ScriptedTranslator(), None).translate(prompt)
        return outcome.text

    english = asyncio.run(run())
    assert SD_SYNTAX.findall(english) == SD_SYNTAX.findall(normalize_punctuation(prompt))
    assert not needs_translation(english)


async def test_metric_hooks_see_lookups_and_translation_time() -> None:
    lookups: list[bool] = []
    timings: list[tuple[float, bool]] = []
    cache = DictCache()

    def translator(*answers: str | Exception) -> PromptTranslator:
        return PromptTranslator(
            ScriptedTranslator(*answers),
            cache,
            "passthrough",
            on_cache_lookup=lookups.append,
            on_translated=lambda s, ok: timings.append((s, ok)),
        )

    await translator().translate("长发, 少女")
    await translator().translate("长发")
    await translator().translate("an English prompt")
    await translator(TranslatorUnavailable("down")).translate("猫")
    assert lookups == [False, False, True, False]
    assert [ok for _, ok in timings] == [True, True, False]
    assert all(seconds >= 0 for seconds, _ in timings)
