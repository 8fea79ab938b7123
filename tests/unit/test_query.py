"""engine/query/universal.py's pure functions: fusion formulas, recommend scoring, order values, groups.

Expected numbers are worked out by hand from the formulas in Qdrant 1.19's source (named in
engine/query/universal.py's docstring).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.filters.payload_path import PayloadPath
from engine.ops import Distance
from engine.query.plan import OrderBy
from engine.query.scores import Hit, average_vector, dbsf, recommend_scorer, rrf
from engine.query.universal import group_keys, order_hits, order_value_of


def test_rrf_sums_one_over_rank_plus_k_per_list():
    fused = rrf([[Hit(1, 9.0), Hit(2, 8.0)], [Hit(2, 0.1)]], k=2, weights=None)
    assert [(hit.id, hit.score) for hit in fused] == [(2, pytest.approx(1 / 3 + 1 / 2)), (1, 0.5)]


def test_rrf_weights_stretch_positions():
    # weight 2: position p counts as (p + 1) / 2 + k - 1.
    fused = rrf([[Hit(1, 0)], [Hit(2, 0)]], k=2, weights=(1.0, 2.0))
    assert [(hit.id, hit.score) for hit in fused] == [(2, pytest.approx(1 / 1.5)), (1, 0.5)]


def test_dbsf_uses_three_sample_deviations_and_half_for_single_points():
    fused = {hit.id: hit.score for hit in dbsf([[Hit(1, 3.0), Hit(2, 1.0)], [Hit(3, 7.0)]])}
    std = np.std([3.0, 1.0], ddof=1)
    low, high = 2.0 - 3 * std, 2.0 + 3 * std
    assert fused == pytest.approx(
        {1: (3 - low) / (high - low), 2: (1 - low) / (high - low), 3: 0.5}
    )


def test_average_vector_doubles_the_positive_mean_minus_the_negative():
    vector = average_vector(
        [np.array([1, 0], np.float32), np.array([0, 1], np.float32)], [np.array([1, 1], np.float32)]
    )
    assert vector.tolist() == [0.0, 0.0]


def test_best_score_is_the_sigmoid_of_the_better_side():
    score = recommend_scorer(
        "best_score", [np.array([1, 0], np.float32)], [np.array([0, 1], np.float32)], Distance.DOT
    )
    scores = score(np.array([[2, 0], [0, 3]], np.float32))
    assert scores.tolist() == pytest.approx([0.5 * (2 / 3 + 1), -0.5 * (3 / 4 + 1)])


def test_order_values_and_start_from():
    points = [(1, {"t": "2024-01-01T00:00:01Z"}), (2, {"t": [5, 2.5]}), (3, {"t": True})]
    assert order_value_of("1970-01-01T00:00:00.000002Z") == 2
    hits = order_hits(points, OrderBy("t", is_descending=True, start_from=5), limit=10)
    assert [(hit.id, hit.order_value) for hit in hits] == [(2, 5), (2, 2.5)]


def test_group_keys_are_strings_and_integers_or_the_point_is_left_out():
    """Qdrant's GroupsAggregator: array elements are keys too; a float, bool, null or
    object among the values leaves the whole point out."""
    path = PayloadPath.parse("g")
    assert group_keys({"g": ["a", "b", "a", 7]}, path) == ["a", "b", 7]
    assert group_keys({"g": "a"}, path) == ["a"]
    assert group_keys({"h": "a"}, path) == []
    for bad in (1.5, True, None, {"x": 1}, ["a", 2.0]):
        assert group_keys({"g": bad}, path) is None, bad
