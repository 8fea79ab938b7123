"""Geometry as the `geo` crate computes it for Qdrant's geo conditions.

Owns: Haversine distance on geo's mean Earth radius, a point's position relative to a
polygon ring (winding number, boundary short cut) and the exact orientation predicate.
Not here: the geo condition types and what matches them (engine/filters/conditions.py).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

EARTH_RADIUS_M = 6371008.8  # the `geo` crate's MEAN_EARTH_RADIUS, used by Qdrant's Haversine
# Shewchuk's ccwerrboundA: below this the float orientation may have the wrong sign.
ORIENT_ERROR_BOUND = (3.0 + 16.0 * 2.0**-53) * 2.0**-53
OUTSIDE, BOUNDARY, INSIDE = 0, 1, 2  # where a point lies relative to a polygon ring


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """The `geo` crate's Haversine distance, in the same order of operations."""
    theta1 = math.radians(lat1)
    theta2 = math.radians(lat2)
    delta_theta = math.radians(lat2 - lat1)
    delta_lambda = math.radians(lon2 - lon1)
    half_theta = math.sin(delta_theta / 2.0)
    half_lambda = math.sin(delta_lambda / 2.0)
    a = half_theta * half_theta + math.cos(theta1) * math.cos(theta2) * (half_lambda * half_lambda)
    return EARTH_RADIUS_M * (2.0 * math.asin(math.sqrt(a)))


def closed_ring(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(lon, lat) pairs closed as geo's Polygon::new closes a ring."""
    ring = list(points)
    if ring and ring[0] != ring[-1]:
        ring.append(ring[0])  # geo's Polygon::new closes an open ring
    return ring


def ring_position(x: float, y: float, ring: list[tuple[float, float]]) -> int:
    """geo's `coord_pos_relative_to_ring`: winding number with an on-boundary short cut."""
    if len(ring) < 2:
        return BOUNDARY if ring and ring[0] == (x, y) else OUTSIDE
    winding_number = 0
    for (start_x, start_y), (end_x, end_y) in itertools.pairwise(ring):
        if start_y <= y:
            if end_y < y:
                continue
            orientation = orient2d(start_x, start_y, end_x, end_y, x, y)
            if orientation > 0 and end_y != y:
                winding_number += 1
                continue
        elif end_y <= y:
            orientation = orient2d(start_x, start_y, end_x, end_y, x, y)
            if orientation < 0:
                winding_number -= 1
                continue
        else:
            continue
        if orientation == 0 and min(start_x, end_x) <= x <= max(start_x, end_x):
            return BOUNDARY
    return INSIDE if winding_number else OUTSIDE


def orient2d(ax: float, ay: float, bx: float, by: float, cx: float, cy: float) -> int:
    """Sign of the turn a->b->c (1 counterclockwise), exact like geo's robust predicate."""
    left = (ax - cx) * (by - cy)
    right = (ay - cy) * (bx - cx)
    determinant = left - right
    if abs(determinant) > ORIENT_ERROR_BOUND * (abs(left) + abs(right)):
        return 1 if determinant > 0 else -1
    # Too close to call in floats: decide exactly (floats are exact fractions).
    ax_, ay_, bx_, by_, cx_, cy_ = (Fraction(v) for v in (ax, ay, bx, by, cx, cy))
    exact = (ax_ - cx_) * (by_ - cy_) - (ay_ - cy_) * (bx_ - cx_)
    return (exact > 0) - (exact < 0)
