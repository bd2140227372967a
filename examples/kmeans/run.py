"""k-means over private points: three users submit points, anyone runs the iterations.

python -m examples.kmeans.run
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from examples.common import artifact, main, need_accounts, refusal, send

K = 3
ROUNDS = 5
# Three blobs. The first K points seed the centroids; two of them lie in the same blob, so
# Lloyd's iterations have work to do (they settle in the fourth round).
POINTS: list[tuple[str, int, int]] = [
    ("alice", 12, 10),
    ("alice", 8, 14),
    ("bob", 95, 22),
    ("carol", 48, 91),
    ("alice", 15, 6),
    ("bob", 102, 18),
    ("bob", 99, 30),
    ("carol", 55, 88),
    ("carol", 51, 97),
    ("alice", 10, 12),
    ("bob", 90, 25),
    ("carol", 44, 93),
    ("alice", 30, 40),  # an outlier between the blobs
]


def run(w3: Any, accounts: Sequence[str]) -> dict[str, Any]:
    alice, bob, carol, dave = need_accounts(accounts, 4, "kmeans")
    people = {"alice": alice, "bob": bob, "carol": carol}
    kmeans = artifact("kmeans", "KMeans").deploy(w3, K, sender=alice)

    mine: dict[str, list[int]] = {name: [] for name in people}
    for index, (name, x, y) in enumerate(POINTS):
        send(w3, kmeans.functions.add_point(x, y), people[name])
        mine[name].append(index)

    too_early = refusal(kmeans.functions.cluster_of(0), alice)
    # anyone may run the computation, in steps: 2 rounds now, the rest later
    send(w3, kmeans.functions.iterate(2), dave)
    early = [list(c) for c in kmeans.functions.centroids().call()]
    send(w3, kmeans.functions.iterate(ROUNDS - 2), bob)

    return {
        "k": kmeans.functions.k().call(),
        "point_count": kmeans.functions.point_count().call(),
        "rounds_run": kmeans.functions.rounds_run().call(),
        "centroids_after_2_rounds": early,
        "centroids": [list(c) for c in kmeans.functions.centroids().call()],
        # each user learns the cluster of their own points only
        "clusters": {
            name: [kmeans.functions.cluster_of(i).call({"from": people[name]}) for i in mine[name]]
            for name in people
        },
        "bob_asks_about_alice": refusal(kmeans.functions.cluster_of(mine["alice"][0]), bob),
        "before_iterating": too_early,
        "too_many_rounds": refusal(kmeans.functions.iterate(11), dave),
        "huge_coordinate": refusal(kmeans.functions.add_point(2**64, 0), dave),
    }


if __name__ == "__main__":
    main(run)
