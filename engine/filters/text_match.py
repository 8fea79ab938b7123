"""Full-text matching through a text payload index, as Qdrant 1.19 does it.

Owns: turning a text index's params into a tokenizer (word, whitespace and prefix tokenizers,
lowercase, min/max token length, custom stopwords), the three full-text matches on a
tokenized field (`text`: every query token is in the value; `text_any`: one is; `phrase`:
the tokens appear consecutively, in order), refusing the params Keel cannot reproduce, and
rewriting a filter so its conditions on text-indexed fields use them.
Not here: the filter language (engine/filters/conditions.py) or the index entries (engine/store/payload_index.py).

Without a text index, Qdrant 1.19 matches `text`/`phrase`/`text_any` as substrings
(engine/filters/conditions.py); with one, its tokenizer decides (`full_text_index/tokenizers/mod.rs`,
`full_text_index_read.rs::check_payload_match`):
- word: split on every char that is not alphanumeric; whitespace: split on whitespace;
  prefix: words as with `word`, and a document holds every prefix of each word from
  min_token_len (default 1) to max_token_len chars, while a query word is cut to
  max_token_len and not filtered by stopwords or max length.
- each token: lowercased unless `lowercase: false`, dropped if it is a stopword, then
  dropped if shorter than min_token_len or (except prefix documents) longer than
  max_token_len, counted in chars.
- an empty query token set matches nothing. A phrase is tokenized as a document.
Multilingual tokenizing, stemming, ASCII folding and language stopword lists need data and
algorithms Keel does not have: creating such an index answers 501.
Python's `str.isalnum`, `str.split()` and `str.lower` stand in for Rust's
`char::is_alphanumeric`, `split_whitespace` and `to_lowercase`; they differ only on rare
code points (combining marks that Unicode calls alphabetic, \\x1c-\\x1f as whitespace).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine.errors import BadRequest, NotImplementedYet
from engine.filters import conditions as filters

TOKENIZERS = ("word", "whitespace", "prefix", "multilingual")
STOPWORDS_KEYS = frozenset({"languages", "custom"})
_NOT_ALPHANUMERIC = re.compile(r"[^\w]|_")  # \w is alphanumeric plus "_" in Python


@dataclass(frozen=True)
class Tokenizer:
    kind: str  # "word", "whitespace" or "prefix"
    lowercase: bool = True
    min_token_len: int | None = None
    max_token_len: int | None = None
    stopwords: frozenset[str] = frozenset()

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> Tokenizer:
        """The tokenizer of a text index's params (None: Qdrant's defaults)."""
        params = params or {}
        check_text_params(params)
        lowercase = params.get("lowercase")
        lowercase = True if lowercase is None else lowercase
        custom = (params.get("stopwords") or {}).get("custom") or []
        stopwords = frozenset(word.lower() if lowercase else word for word in custom)
        return cls(
            params.get("tokenizer") or "word",
            lowercase,
            params.get("min_token_len"),
            params.get("max_token_len"),
            stopwords,
        )

    def document_tokens(self, text: str) -> list[str]:
        """The tokens a payload string holds, in order (repeats kept)."""
        if self.kind != "prefix":
            return [t for t in map(self._token, self._words(text)) if t is not None]
        tokens = []
        min_len = self.min_token_len or 1
        for word in self._words(text):
            token = self._token(word, check_max_len=False)
            if token is None:
                continue
            longest = len(token) if self.max_token_len is None else self.max_token_len
            for length in range(min_len, longest + 1):
                if length >= len(token):
                    tokens.append(token)
                    break
                tokens.append(token[:length])
        return tokens

    def query_tokens(self, text: str) -> set[str]:
        """The tokens of a `text` / `text_any` query."""
        if self.kind != "prefix":
            return set(self.document_tokens(text))
        tokens = set()
        for word in self._words(text):
            token = word.lower() if self.lowercase else word
            if self.min_token_len is not None and len(token) < self.min_token_len:
                continue
            tokens.add(token if self.max_token_len is None else token[: self.max_token_len])
        return tokens

    def _words(self, text: str) -> list[str]:
        if self.kind == "whitespace":
            return text.split()
        return [word for word in _NOT_ALPHANUMERIC.split(text) if word]

    def _token(self, word: str, check_max_len: bool = True) -> str | None:
        token = word.lower() if self.lowercase else word
        if not token or token in self.stopwords:
            return None
        if self.min_token_len is not None and len(token) < self.min_token_len:
            return None
        if check_max_len and self.max_token_len is not None and len(token) > self.max_token_len:
            return None
        return token


@dataclass(frozen=True)
class TokenMatch(filters.CompiledMatch):
    """A `text`, `text_any` or `phrase` match on a field with a text index.

    It checks a field's whole value: Qdrant's index holds a point's tokens of every string
    in an array together, so `text` may find its tokens in different elements; a phrase
    never spans two elements (Qdrant puts a boundary between them).
    """

    kind: str  # "text", "text_any" or "phrase"
    query: str
    tokenizer: Tokenizer
    checks_whole_value = True

    def compile(self) -> Callable[[Any], bool]:
        tokenize = self.tokenizer.document_tokens
        if self.kind == "phrase":
            phrase = tokenize(self.query)
            width = len(phrase)

            def has_phrase(value: Any) -> bool:
                for text in _strings(value):
                    tokens = tokenize(text)
                    if any(tokens[i : i + width] == phrase for i in range(len(tokens) - width + 1)):
                        return True
                return False

            return (lambda value: False) if not phrase else has_phrase
        wanted = self.tokenizer.query_tokens(self.query)
        if not wanted:
            return lambda value: False

        def tokens_of(value: Any) -> set[str]:
            return {token for text in _strings(value) for token in tokenize(text)}

        if self.kind == "text":
            return lambda value: wanted <= tokens_of(value)
        assert self.kind == "text_any", self.kind
        return lambda value: not wanted.isdisjoint(tokens_of(value))


def _strings(value: Any) -> list[str]:
    """The strings a text index takes from a value: it, or those in it if it is an array."""
    if type(value) is str:
        return [value]
    if type(value) is list:
        return [element for element in value if type(element) is str]
    return []


def check_text_params(params: Mapping[str, Any]) -> None:
    """Raise NotImplementedYet for text index params Keel cannot reproduce exactly."""
    tokenizer = params.get("tokenizer") or "word"
    if tokenizer not in TOKENIZERS:
        raise NotImplementedYet(f"text index tokenizer {tokenizer!r}")
    if tokenizer == "multilingual":
        raise NotImplementedYet("text index tokenizer `multilingual`")
    if params.get("ascii_folding"):
        raise NotImplementedYet("text index option `ascii_folding`")
    if params.get("stemmer") is not None:
        raise NotImplementedYet("text index option `stemmer`")
    stopwords = params.get("stopwords")
    if stopwords is None:
        return
    if type(stopwords) is str or (type(stopwords) is dict and stopwords.get("languages")):
        raise NotImplementedYet("text index stopwords by language (a `custom` list works)")
    custom = stopwords.get("custom") if type(stopwords) is dict else None
    is_custom_list = custom is None or (
        type(custom) is list and all(type(word) is str for word in custom)
    )
    if type(stopwords) is not dict or not is_custom_list or set(stopwords) - STOPWORDS_KEYS:
        # Checked before the index is logged: a tokenizer that cannot be built would fail
        # every filter on the field, writes by filter included, at apply time.
        raise BadRequest("text index `stopwords` must be a language or {languages, custom}")


def with_text_indexes(
    filter_: filters.Filter, tokenizers: Mapping[str, Tokenizer]
) -> filters.Filter:
    """`filter_` with each top-level `text`/`text_any`/`phrase` match on a text-indexed field
    replaced by a TokenMatch. Conditions inside `nested` keep substring matching: Qdrant checks
    nested objects without field indexes."""
    if not tokenizers:
        return filter_

    def rewrite(condition: Any) -> Any:
        if isinstance(condition, filters.Filter):
            return replace(
                condition,
                must=_each(condition.must, rewrite),
                should=_each(condition.should, rewrite),
                must_not=_each(condition.must_not, rewrite),
                min_should=None
                if condition.min_should is None
                else replace(
                    condition.min_should,
                    conditions=_each(condition.min_should.conditions, rewrite),
                ),
            )
        if not isinstance(condition, filters.FieldCondition):
            return condition
        tokenizer = tokenizers.get(str(condition.key))
        match = condition.match
        if tokenizer is None or match is None:
            return condition
        if isinstance(match, filters.MatchText):
            return replace(condition, match=TokenMatch("text", match.text, tokenizer))
        if isinstance(match, filters.MatchTextAny):
            return replace(condition, match=TokenMatch("text_any", match.text_any, tokenizer))
        if isinstance(match, filters.MatchPhrase):
            return replace(condition, match=TokenMatch("phrase", match.phrase, tokenizer))
        return condition

    return rewrite(filter_)


def _each(conditions: Any, rewrite: Callable[[Any], Any]) -> Any:
    if conditions is None:
        return None
    return type(conditions)(rewrite(condition) for condition in conditions)
