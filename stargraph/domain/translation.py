"""Chinese → English prompt translation: the rules, and the policy around the model.

The model never sees Stable Diffusion syntax. A prompt is first punctuation-normalised
(full-width `，（）：` → `,():`), then split into syntax kept verbatim — `( ) [ ] { } | , : ;`,
line breaks, `<lora:…>` tags, `embedding:name`, escapes like `\\(` — and the text between.
Only text pieces holding Chinese go to the `Translator`, one piece per call (deduplicated
and cached); each answer is cleaned and checked, with one stricter retry. The prompt is
then rebuilt around the answers, so weights, LoRA tags and English parts stay as they were.

`enhance` adds a workflow's quality prefix and negative suffix, exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from stargraph.domain.errors import TranslationUnavailable
from stargraph.domain.jobs import TranslationState

log = logging.getLogger(__name__)

Fallback = Literal["error", "passthrough"]
CacheHook = Callable[[bool], None]  # hit?
TimeHook = Callable[[float, bool], None]  # (seconds, translated?)

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")

# The full-width forms of ASCII (！ to ～) are ASCII shifted by 0xFEE0; the rest by hand.
_PUNCTUATION = {chr(c): chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)}
_PUNCTUATION.update(
    {
        "，": ", ",
        "、": ", ",
        "；": "; ",
        "。": ". ",
        "\u3000": " ",  # ideographic space
        "【": "[",
        "】": "]",
        "〔": "(",
        "〕": ")",
        "「": '"',
        "」": '"',
        "『": '"',
        "』": '"',
        "《": '"',
        "》": '"',
        "“": '"',
        "”": '"',
        "‘": "'",
        "’": "'",
        "…": "...",
    }
)
_NORMALIZE = str.maketrans(_PUNCTUATION)

_SYNTAX = re.compile(
    r"""
      <[^<>\n]*>                              # <lora:name:0.8>, <hypernet:…>: kept whole
    | \\.                                     # an escaped character such as \(
    | \bembedding:[^\s,()\[\]{}|<>:]+         # embedding:name
    | [()\[\]{}|,:;\n]                        # weights, alternation, separators
    """,
    re.VERBOSE | re.DOTALL,
)


class TranslatorUnavailable(Exception):
    """The translation model could not give a usable answer (down, slow, error, nonsense)."""


class Translator(Protocol):
    """A model that turns one Chinese text into English."""

    version: str  # names the model and prompt; cached answers are kept per version

    async def translate(self, text: str, *, strict: bool = False) -> str:
        """The model's raw English answer; `strict` = the retry with a firmer instruction.
        Raises TranslatorUnavailable."""
        ...


class TranslationCache(Protocol):
    async def get(self, namespace: str, text: str) -> str | None: ...

    async def put(self, namespace: str, text: str, translation: str) -> None: ...


@dataclass(frozen=True, slots=True)
class TranslationOutcome:
    text: str  # what goes on to enhancement: English, or the original on passthrough
    state: TranslationState

    @property
    def translated(self) -> str | None:
        """The English text when a translation happened, else None."""
        return self.text if self.state is TranslationState.TRANSLATED else None


@dataclass(slots=True)
class TranslationStats:
    """Counters for metrics; the composition root reads them."""

    cache_hits: int = 0
    cache_misses: int = 0
    failures: int = 0
    passthroughs: int = 0


@dataclass(frozen=True, slots=True)
class Piece:
    text: str
    translate: bool  # holds Chinese and goes to the model


def normalize_punctuation(text: str) -> str:
    """Full-width punctuation and letters to their ASCII forms."""
    return text.translate(_NORMALIZE)


def split_prompt(text: str) -> list[Piece]:
    """Syntax and text pieces whose concatenation is `text` again."""
    pieces: list[Piece] = []
    position = 0
    for match in _SYNTAX.finditer(text):
        _add_text(pieces, text[position : match.start()])
        pieces.append(Piece(match.group(), translate=False))
        position = match.end()
    _add_text(pieces, text[position:])
    return pieces


def _add_text(pieces: list[Piece], chunk: str) -> None:
    if not chunk:
        return
    core = chunk.strip()
    if not CJK.search(core):
        pieces.append(Piece(chunk, translate=False))
        return
    lead = chunk[: len(chunk) - len(chunk.lstrip())]
    trail = chunk[len(chunk.rstrip()) :]
    pieces.extend(Piece(p, translate=False) for p in (lead,) if p)
    pieces.append(Piece(core, translate=True))
    pieces.extend(Piece(p, translate=False) for p in (trail,) if p)


def segments_to_translate(text: str) -> list[str]:
    """The distinct Chinese-holding pieces of a normalised prompt, in order."""
    return list(dict.fromkeys(p.text for p in split_prompt(text) if p.translate))


def needs_translation(text: str) -> bool:
    """True when some text outside SD syntax holds Chinese characters."""
    if text.isascii():
        return False
    return bool(segments_to_translate(normalize_punctuation(text)))


# ---- checking the model's answers -------------------------------------------------------

_LEAD_IN = re.compile(
    r"^(?:(?:sure|ok(?:ay)?|certainly|of course)[!,.]?\s*)?"
    r"here(?:'s| is| are)\b[^:\n]*:\s*",
    re.IGNORECASE,
)
_LABEL = re.compile(
    r"^(?:english(?: translation)?|translation|translated(?: text)?|output|answer)\s*:\s*",
    re.IGNORECASE,
)
_CHATTER = re.compile(
    r"^(?:(?:sure|certainly|of course|ok(?:ay)?)[!,.:]|here (?:is|are)\b|i(?:'m| am) sorry"
    r"|as an ai|i can(?:not|'t)\b|note:)|\btranslat",
    re.IGNORECASE,
)
_QUOTES = [('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("「", "」"), ("`", "`")]


class BadAnswer(Exception):
    """The model answered, but not with a clean translation."""


def clean_answer(source: str, answer: str) -> str:
    """The translation inside a model's answer, or BadAnswer saying what is wrong."""
    text = _strip_wrapping(answer)
    if not text:
        raise BadAnswer("empty answer")
    if CJK.search(text):
        raise BadAnswer("Chinese left in the answer")
    if "\n" in text or "\r" in text:
        raise BadAnswer("several lines")
    if len(text) > max(48, 6 * len(source)):
        raise BadAnswer("answer far longer than the text")
    if _CHATTER.search(text) and "译" not in source:
        raise BadAnswer("commentary instead of a translation")
    if text.endswith(".") and not source.rstrip().endswith((".", "。")):
        text = text[:-1].rstrip()
    return text


def _strip_wrapping(answer: str) -> str:
    text = answer.strip()
    if text.startswith("```") and text.endswith("```") and len(text) >= 6:
        text = text[3:-3].strip()
    text = _LABEL.sub("", _LEAD_IN.sub("", text), count=1).strip()
    for left, right in _QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            return text[len(left) : -len(right)].strip()
    return text


# ---- enhancement ------------------------------------------------------------------------


def enhance(positive: str, negative: str, prefix: str, suffix: str) -> tuple[str, str]:
    """The quality prefix before the prompt and the suffix after the negative, each once."""
    if not positive.startswith(prefix):
        positive = prefix + positive
    stem = negative.rstrip(" ,\t\n\r")
    if not stem:
        return positive, suffix.lstrip(" ,")
    if stem.endswith(suffix.rstrip()):
        return positive, negative
    return positive, stem + suffix


# ---- the policy -------------------------------------------------------------------------


class PromptTranslator:
    """Translate prompts that hold Chinese; English ones never reach the model.

    `fallback="error"` turns any failure into TranslationUnavailable (the submission is
    refused); `"passthrough"` sends the normalised original and says so in the outcome.
    `on_cache_lookup(hit)` and `on_translated(seconds, ok)` feed metrics (prompts that
    needed translation only; `ok` is False when the fallback was taken or it was refused).
    """

    def __init__(
        self,
        translator: Translator,
        cache: TranslationCache | None,
        fallback: Fallback = "error",
        *,
        timeout_s: float | None = None,
        stats: TranslationStats | None = None,
        on_cache_lookup: CacheHook | None = None,
        on_translated: TimeHook | None = None,
    ) -> None:
        self._translator = translator
        self._cache = cache
        self._fallback = fallback
        self._timeout_s = timeout_s
        self.stats = stats or TranslationStats()
        self._on_cache_lookup = on_cache_lookup
        self._on_translated = on_translated

    async def translate(self, prompt: str) -> TranslationOutcome:
        if prompt.isascii():  # nothing to normalise, nothing Chinese (most prompts)
            return TranslationOutcome(prompt, TranslationState.NOT_NEEDED)
        text = normalize_punctuation(prompt)
        pieces = split_prompt(text)
        wanted = list(dict.fromkeys(p.text for p in pieces if p.translate))
        if not wanted:
            return TranslationOutcome(text, TranslationState.NOT_NEEDED)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                answers = {segment: await self._segment(segment) for segment in wanted}
        except (TranslatorUnavailable, TimeoutError) as exc:
            self._timed(started, ok=False)
            return self._fail(text, exc)
        self._timed(started, ok=True)
        english = "".join(answers[p.text] if p.translate else p.text for p in pieces)
        return TranslationOutcome(english, TranslationState.TRANSLATED)

    def _timed(self, started: float, *, ok: bool) -> None:
        if self._on_translated is not None:
            self._on_translated(time.perf_counter() - started, ok)

    async def _segment(self, segment: str) -> str:
        namespace = self._translator.version
        if self._cache is not None:
            cached = await self._cache.get(namespace, segment)
            self._looked_up(hit=cached is not None)
            if cached is not None:
                return cached
        answer = await self._ask(segment)
        if self._cache is not None:
            await self._cache.put(namespace, segment, answer)
        return answer

    def _looked_up(self, *, hit: bool) -> None:
        if hit:
            self.stats.cache_hits += 1
        else:
            self.stats.cache_misses += 1
        if self._on_cache_lookup is not None:
            self._on_cache_lookup(hit)

    async def _ask(self, segment: str) -> str:
        try:
            return clean_answer(segment, await self._translator.translate(segment))
        except BadAnswer as first:
            log.info("translation answer rejected (%s); retrying once", first)
        try:
            return clean_answer(segment, await self._translator.translate(segment, strict=True))
        except BadAnswer as second:
            raise TranslatorUnavailable(f"no usable answer: {second}") from second

    def _fail(self, text: str, exc: BaseException) -> TranslationOutcome:
        self.stats.failures += 1
        reason = str(exc) or "timed out"
        if self._fallback == "passthrough":
            self.stats.passthroughs += 1
            log.warning("translation failed (%s); sending the prompt untranslated", reason)
            return TranslationOutcome(text, TranslationState.PASSTHROUGH)
        log.warning("translation failed (%s); refusing the submission", reason)
        raise TranslationUnavailable(
            "the prompt could not be translated to English right now; "
            "try again later or write it in English"
        ) from exc
