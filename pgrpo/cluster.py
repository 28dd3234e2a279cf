"""Entry point: group users into K preference clusters.

``kmeans``: scikit-learn K-Means over the user embeddings (seeded, 10 restarts).
``random``: the same cluster sizes as K-Means, members drawn at random (the paper's
figure 4 ablation: is it the clustering that helps, or just having groups?).

    python -m pgrpo.cluster --config config.yaml --embeddings FILE.npz --out clusters.json \
        [--labels users.jsonl]

``--labels``: a JSON-lines file of users with their true group (``user_id``, ``persona``), as
the personas task knows it; the output then holds the adjusted Rand index of the clusters
against it (1 = the true groups recovered, about 0 = chance).
"""

from __future__ import annotations

import argparse
import zipfile

import numpy as np

from pgrpo.config import load_config
from pgrpo.io import PgrpoError, read_jsonl, run_cli, write_json


def kmeans_clusters(embeddings: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Cluster id per row, relabelled so that cluster 0 is the largest, 1 the next, ..."""
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embeddings)
    return relabel_by_size(labels, k)


def relabel_by_size(labels: np.ndarray, k: int) -> np.ndarray:
    """Rename cluster ids by decreasing size (ties by old id) so 0 is the majority cluster."""
    sizes = np.bincount(labels, minlength=k)
    order = sorted(range(k), key=lambda c: (-sizes[c], c))
    mapping = np.empty(k, dtype=np.int64)
    mapping[order] = np.arange(k)
    return mapping[labels]


def random_clusters(sizes: np.ndarray, num_users: int, seed: int) -> np.ndarray:
    """Random assignment with the given cluster sizes."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    assert len(labels) == num_users
    return np.random.default_rng(seed).permutation(labels)


def assign_clusters(embeddings: np.ndarray, k: int, method: str, seed: int) -> np.ndarray:
    num_users = embeddings.shape[0]
    if k > num_users:
        raise PgrpoError(
            f"clustering.num_clusters: {k} is larger than the number of users ({num_users})"
        )
    labels = kmeans_clusters(embeddings, k, seed)
    if method == "random":
        labels = random_clusters(np.bincount(labels, minlength=k), num_users, seed)
    return labels


def adjusted_rand_index(users: np.ndarray, labels: np.ndarray, truth_file: str) -> float:
    """ARI of cluster ``labels`` against the ``persona`` of each user in ``truth_file``."""
    from sklearn.metrics import adjusted_rand_score

    truth = {int(row["user_id"]): row["persona"] for row in read_jsonl(truth_file)}
    missing = [int(u) for u in users if int(u) not in truth]
    if missing:
        raise PgrpoError(
            f"{truth_file}: no true group for {len(missing)} users (e.g. {missing[0]})"
        )
    return float(adjusted_rand_score([truth[int(u)] for u in users], labels))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Cluster users by their embeddings.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--embeddings", required=True)
    parser.add_argument("--out", required=True, help="output JSON: assignment and sizes")
    parser.add_argument("--num-clusters", type=int, help="overrides clustering.num_clusters")
    parser.add_argument(
        "--method", choices=["kmeans", "random"], help="overrides clustering.method"
    )
    parser.add_argument("--labels", help="users' true groups: report the adjusted Rand index")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    try:
        with np.load(args.embeddings) as data:
            users, embeddings = data["user_ids"], data["embeddings"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise PgrpoError(f"{args.embeddings}: not a user-embedding file ({e})") from None
    if len(users) != len(embeddings):
        raise PgrpoError(
            f"{args.embeddings}: {len(users)} user ids but {len(embeddings)} embeddings"
        )
    k = args.num_clusters or config["clustering"]["num_clusters"]
    method = args.method or config["clustering"]["method"]
    labels = assign_clusters(embeddings, k, method, config["seed"])
    sizes = np.bincount(labels, minlength=k).tolist()
    result = {
        "method": method,
        "num_clusters": k,
        "sizes": sizes,
        "assignment": {str(int(u)): int(c) for u, c in zip(users, labels, strict=True)},
    }
    if args.labels:
        result["adjusted_rand_index"] = adjusted_rand_index(users, labels, args.labels)
    write_json(args.out, result)
    ari = f", ARI {result['adjusted_rand_index']:.3f}" if args.labels else ""
    print(f"{method} clusters, K={k}, sizes {sizes}{ari}")


if __name__ == "__main__":
    run_cli(main)
