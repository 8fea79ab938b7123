"""engine/filters/text_match.py: full-text matching on a text-indexed field agrees with Qdrant's own
engine (qdrant-edge-py, a text payload index of the same params), and params Keel cannot
reproduce are refused."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import qdrant_edge

from engine.errors import BadRequest, NotImplementedYet
from engine.filters.conditions import (
    FieldCondition,
    Filter,
    MatchPhrase,
    MatchText,
    MatchTextAny,
    PayloadPath,
)
from engine.filters.text_match import Tokenizer, check_text_params
from engine.query.reads import compile_filter_with_indexes as compile_filter
from engine.store.payload_index import IndexSpec

WORDS = ["Hello", "world", "HELLO", "wörld", "a", "an", "the", "theory", "the-end", "x_y",
         "Ünïcode", "ab12", "12", "ΣΟΦΙΑ", "text", "texts", "tex"]  # fmt: skip
SEPARATORS = [" ", "  ", ", ", "-", "_", "\t", ". ", "/"]
PARAMS_CASES: list[dict[str, Any]] = [
    {},
    {"tokenizer": "whitespace"},
    {"tokenizer": "word", "lowercase": False},
    {"tokenizer": "word", "min_token_len": 2, "max_token_len": 5},
    {"tokenizer": "prefix", "min_token_len": 2, "max_token_len": 4},
    {"tokenizer": "prefix"},
    {"tokenizer": "word", "stopwords": {"custom": ["The", "an"]}},
]
EDGE_TOKENIZERS = {
    "word": qdrant_edge.TokenizerType.Word,
    "whitespace": qdrant_edge.TokenizerType.Whitespace,
    "prefix": qdrant_edge.TokenizerType.Prefix,
}


def random_text(rng: random.Random, words_max: int = 5) -> str:
    parts = []
    for _ in range(rng.randint(0, words_max)):
        parts.append(rng.choice(WORDS))
        parts.append(rng.choice(SEPARATORS))
    return "".join(parts[:-1])


def edge_params(params: dict[str, Any]) -> qdrant_edge.TextIndexParams:
    stopwords = params.get("stopwords")
    return qdrant_edge.TextIndexParams(
        tokenizer=EDGE_TOKENIZERS[params.get("tokenizer", "word")],
        min_token_len=params.get("min_token_len"),
        max_token_len=params.get("max_token_len"),
        lowercase=params.get("lowercase"),
        phrase_matching=True,
        stopwords=None
        if stopwords is None
        else qdrant_edge.StopwordsSet(custom=set(stopwords["custom"])),
    )


@pytest.mark.parametrize("case", range(len(PARAMS_CASES)))
def test_text_matches_agree_with_qdrant_edge(tmp_path: Path, case: int) -> None:
    params = PARAMS_CASES[case]
    rng = random.Random(case)
    texts = [random_text(rng) for _ in range(60)]
    payloads: list[dict[str, Any]] = [{"t": text} for text in texts]
    payloads += [{"t": [random_text(rng, 2), random_text(rng, 2)]} for _ in range(10)]
    payloads += [{"t": 12}, {"other": "hello"}, {}]
    vectors = {"": qdrant_edge.EdgeVectorParams(size=1, distance=qdrant_edge.Distance.Dot)}
    shard = qdrant_edge.EdgeShard.create(str(tmp_path), qdrant_edge.EdgeConfig(vectors=vectors))
    shard.update(qdrant_edge.UpdateOperation.create_field_index("t", edge_params(params)))
    shard.update(
        qdrant_edge.UpdateOperation.upsert_points(
            [qdrant_edge.Point(i, [1.0], payload) for i, payload in enumerate(payloads)]
        )
    )
    specs = {"t": IndexSpec("t", "text", {"type": "text", **params}, 0)}
    queries = [random_text(rng, 3) for _ in range(40)] + ["", "hello world", "THE end"]
    disagreements = []
    for query in queries:
        for keel_match, edge_match in (
            (MatchText(query), qdrant_edge.MatchText(query)),
            (MatchTextAny(query), qdrant_edge.MatchTextAny(query)),
            (MatchPhrase(query), qdrant_edge.MatchPhrase(query)),
        ):
            condition = FieldCondition(PayloadPath.parse("t"), match=keel_match)
            check = compile_filter(Filter(must=(condition,)), specs)
            keel_ids = {i for i, payload in enumerate(payloads) if check(i, payload, ())}
            edge_filter = qdrant_edge.Filter(
                must=[qdrant_edge.FieldCondition("t", match=edge_match)]
            )
            records, _ = shard.scroll(qdrant_edge.ScrollRequest(limit=1000, filter=edge_filter))
            edge_ids = {record.id for record in records}
            if keel_ids != edge_ids:
                disagreements.append((type(keel_match).__name__, query, keel_ids ^ edge_ids))
    shard.close()
    assert disagreements == []


def test_without_a_text_index_matching_stays_substring() -> None:
    condition = FieldCondition(PayloadPath.parse("t"), match=MatchText("ell"))
    check = compile_filter(Filter(must=(condition,)))
    assert check(1, {"t": "hello"}, ())
    specs = {"t": IndexSpec("t", "text", None, 0)}
    assert not compile_filter(Filter(must=(condition,)), specs)(1, {"t": "hello"}, ())


def test_the_prefix_tokenizer_keeps_every_prefix_of_a_document_word() -> None:
    tokenizer = Tokenizer.from_params({"tokenizer": "prefix", "min_token_len": 2})
    assert tokenizer.document_tokens("Hello") == ["he", "hel", "hell", "hello"]
    assert tokenizer.query_tokens("HEL lo x") == {"hel", "lo"}


@pytest.mark.parametrize(
    "params",
    [
        {"tokenizer": "multilingual"},
        {"ascii_folding": True},
        {"stemmer": {"type": "snowball", "language": "english"}},
        {"stopwords": "english"},
        {"stopwords": {"languages": ["english"], "custom": ["x"]}},
    ],
)
def test_params_keel_cannot_reproduce_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(NotImplementedYet):
        check_text_params(params)


@pytest.mark.parametrize(
    "stopwords", [{"custom": [1]}, {"custom": "the"}, {"other": []}, ["the"], 3]
)
def test_malformed_stopwords_are_refused_before_the_index_exists(stopwords: object) -> None:
    """A tokenizer that could not be built would fail every filter on the field at apply
    time (writes by filter included): refused up front."""
    with pytest.raises(BadRequest, match="stopwords"):
        check_text_params({"stopwords": stopwords})
    check_text_params({"stopwords": {"custom": ["the", "a"]}})
