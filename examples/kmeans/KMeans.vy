# pragma version ~=0.4.3
"""
@title KMeans
@notice k-means clustering over private points (the computation workload of RaceTEE).
        Users submit 2-D points; the points stay secret in the confidential state. Anyone can
        run a bounded number of Lloyd iterations; the centroids are the public result, and each
        user may ask which cluster their own points fell into.
        Integer arithmetic only: coordinates below 2**64, centroids are floor means, distance is
        squared Euclidean, ties go to the lower cluster index, an empty cluster keeps its centroid.
        The first k points submitted seed the centroids.
"""

struct Point:
    x: uint256
    y: uint256

event PointAdded:
    index: uint256

event Iterated:
    rounds: uint256
    points: uint256

MAX_POINTS: constant(uint256) = 64
MAX_K: constant(uint256) = 4
MAX_ROUNDS: constant(uint256) = 10
COORD_LIMIT: constant(uint256) = 2**64  # squared distances stay far below 2**256

k: public(uint256)
rounds_run: public(uint256)

_points: DynArray[Point, MAX_POINTS]
_submitter: DynArray[address, MAX_POINTS]
_centroids: DynArray[Point, MAX_K]


@deploy
def __init__(k: uint256):
    assert k >= 1 and k <= MAX_K, "k must be between 1 and MAX_K (4)"
    self.k = k


@external
def add_point(x: uint256, y: uint256) -> uint256:
    """@notice Submit a private point; returns its index (for `cluster_of`)."""
    assert x < COORD_LIMIT and y < COORD_LIMIT, "coordinates must be below 2**64"
    assert len(self._points) < MAX_POINTS, "too many points"
    self._points.append(Point(x=x, y=y))
    self._submitter.append(msg.sender)
    index: uint256 = len(self._points) - 1
    log PointAdded(index=index)
    return index


@view
@external
def point_count() -> uint256:
    return len(self._points)


@pure
@internal
def _dist2(a: Point, b: Point) -> uint256:
    dx: uint256 = a.x - b.x if a.x >= b.x else b.x - a.x
    dy: uint256 = a.y - b.y if a.y >= b.y else b.y - a.y
    return dx * dx + dy * dy


@pure
@internal
def _nearest(p: Point, cents: DynArray[Point, MAX_K]) -> uint256:
    best: uint256 = 0
    best_d: uint256 = max_value(uint256)
    for j: uint256 in range(len(cents), bound=MAX_K):
        d: uint256 = self._dist2(p, cents[j])
        if d < best_d:
            best = j
            best_d = d
    return best


@external
def iterate(rounds: uint256):
    """@notice Run `rounds` (1..10) Lloyd iterations over all points submitted so far."""
    assert rounds >= 1 and rounds <= MAX_ROUNDS, "rounds must be between 1 and 10"
    k: uint256 = self.k
    assert len(self._points) >= k, "need at least k points"
    pts: DynArray[Point, MAX_POINTS] = self._points
    cents: DynArray[Point, MAX_K] = self._centroids
    if len(cents) == 0:
        for j: uint256 in range(k, bound=MAX_K):
            cents.append(pts[j])
    for r: uint256 in range(rounds, bound=MAX_ROUNDS):
        sum_x: uint256[MAX_K] = empty(uint256[MAX_K])
        sum_y: uint256[MAX_K] = empty(uint256[MAX_K])
        count: uint256[MAX_K] = empty(uint256[MAX_K])
        for p: Point in pts:
            j: uint256 = self._nearest(p, cents)
            sum_x[j] += p.x
            sum_y[j] += p.y
            count[j] += 1
        for j: uint256 in range(k, bound=MAX_K):
            if count[j] > 0:
                cents[j] = Point(x=sum_x[j] // count[j], y=sum_y[j] // count[j])
    self._centroids = cents
    self.rounds_run += rounds
    log Iterated(rounds=rounds, points=len(pts))


@view
@external
def centroids() -> DynArray[Point, MAX_K]:
    """@notice The public result: the current centroids (empty before the first iteration)."""
    return self._centroids


@view
@external
def cluster_of(index: uint256) -> uint256:
    """@notice The cluster nearest to point `index`; only its submitter may ask."""
    assert index < len(self._points), "no such point"
    assert self._submitter[index] == msg.sender, "only the point's submitter may ask"
    assert len(self._centroids) > 0, "no centroids yet: call iterate first"
    return self._nearest(self._points[index], self._centroids)
