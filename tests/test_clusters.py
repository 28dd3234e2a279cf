"""Tests for pgrpo.cluster (K-Means and random clusters) and pgrpo.embedding (user embeddings)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from entrypoints import one_error_line, run_entry
from sklearn.metrics import adjusted_rand_score

from pgrpo.cluster import assign_clusters, kmeans_clusters, random_clusters, relabel_by_size
from pgrpo.embedding import embed_texts, user_embeddings
from pgrpo.io import PgrpoError

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / ".test" / "config.yaml"
SIZES = (45, 25, 10)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs of unequal sizes, rows shuffled; (points, blob id)."""
    rng = np.random.default_rng(123)
    dim = 16
    centers = 10.0 * np.eye(dim)[[2, 7, 11]]
    truth = np.repeat(np.arange(len(SIZES)), SIZES)
    points = centers[truth] + rng.normal(scale=0.2, size=(len(truth), dim))
    order = rng.permutation(len(truth))
    return points[order].astype(np.float32), truth[order]


def write_npz(path: Path, num_users: int, dim: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        user_ids=np.arange(100, 100 + num_users, dtype=np.int64),
        embeddings=rng.normal(size=(num_users, dim)).astype(np.float32),
    )
    return path


def run_cluster(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_entry("pgrpo.cluster", "--config", str(TEST_CONFIG), *args, cwd=cwd)


# ------------------------------------------------------------------------- clusters


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_kmeans_recovers_unequal_blobs_largest_first(blobs, seed):
    # several seeds: K-Means' own numbering only matches the sizes' order by chance
    points, truth = blobs
    labels = kmeans_clusters(points, 3, seed=seed)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert np.bincount(labels, minlength=3).tolist() == list(SIZES)
    # cluster 0 is exactly the largest blob, 2 the smallest
    assert labels.tolist() == truth.tolist()


def test_relabel_by_size_orders_by_decreasing_size_ties_by_id():
    labels = np.array([2, 2, 2, 0, 1, 1])
    assert relabel_by_size(labels, 3).tolist() == [0, 0, 0, 2, 1, 1]
    # a tie keeps the old order; an empty cluster goes last
    assert relabel_by_size(np.array([3, 1, 3, 1]), 4).tolist() == [1, 0, 1, 0]
    assert np.bincount(relabel_by_size(np.array([1, 1, 0]), 3), minlength=3).tolist() == [2, 1, 0]


def test_random_clusters_keep_the_sizes():
    labels = random_clusters(np.array([5, 3, 2]), 10, seed=4)
    assert np.bincount(labels).tolist() == [5, 3, 2]
    assert labels.tolist() == random_clusters(np.array([5, 3, 2]), 10, seed=4).tolist()


def test_random_assignment_keeps_kmeans_sizes_but_not_members(blobs):
    points, truth = blobs
    kmeans = assign_clusters(points, 3, "kmeans", seed=0)
    rand = assign_clusters(points, 3, "random", seed=0)
    assert np.bincount(rand, minlength=3).tolist() == np.bincount(kmeans, minlength=3).tolist()
    assert (rand != kmeans).sum() > len(kmeans) // 4
    assert adjusted_rand_score(truth, rand) < 0.2


@pytest.mark.parametrize("method", ["kmeans", "random"])
def test_same_seed_same_labels(method):
    points = np.random.default_rng(5).normal(size=(60, 6))
    first = assign_clusters(points, 4, method, seed=11)
    assert first.tolist() == assign_clusters(points, 4, method, seed=11).tolist()
    assert np.bincount(first, minlength=4).min() >= 1


def test_random_assignment_depends_on_the_seed(blobs):
    points, _ = blobs
    first = assign_clusters(points, 3, "random", seed=0)
    assert first.tolist() != assign_clusters(points, 3, "random", seed=1).tolist()


def test_more_clusters_than_users_raises():
    points = np.random.default_rng(0).normal(size=(5, 4))
    with pytest.raises(PgrpoError, match=r"clustering\.num_clusters.*10.*5"):
        assign_clusters(points, 10, "kmeans", seed=0)
    # K equal to the number of users is allowed: one user per cluster
    labels = assign_clusters(points, 5, "kmeans", seed=0)
    assert np.bincount(labels, minlength=5).tolist() == [1, 1, 1, 1, 1]


@pytest.mark.slow
def test_cli_writes_assignment_and_sizes(tmp_path):
    emb = write_npz(tmp_path / "E.npz", 12)
    out = tmp_path / "clusters" / "kmeans_k3.json"
    result = run_cluster(
        "--embeddings", str(emb), "--num-clusters", "3", "--out", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert written["method"] == "kmeans" and written["num_clusters"] == 3
    assert sorted(written["assignment"]) == sorted(str(u) for u in range(100, 112))
    counts = np.bincount(list(written["assignment"].values()), minlength=3).tolist()
    assert counts == written["sizes"] and sum(counts) == 12
    assert counts == sorted(counts, reverse=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["kmeans_k3.json"]


def test_cli_too_many_clusters_exits_2_without_output(tmp_path):
    emb = write_npz(tmp_path / "E.npz", 5)
    out = tmp_path / "OUT.json"
    result = run_cluster(
        "--embeddings", str(emb), "--num-clusters", "10", "--out", str(out), cwd=tmp_path
    )
    line = one_error_line(result)
    assert "clustering.num_clusters" in line
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["E.npz"]


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "missing key"])
def test_cli_corrupt_embeddings_one_line_naming_the_file(tmp_path, corruption):
    emb = tmp_path / "E.npz"
    if corruption == "garbage":
        emb.write_bytes(b"this is not an npz file\n" * 20)
    elif corruption == "truncated":
        data = write_npz(tmp_path / "whole.npz", 20).read_bytes()
        (tmp_path / "whole.npz").unlink()
        emb.write_bytes(data[: len(data) // 2])
    else:
        np.savez(emb, users=np.arange(5), vectors=np.zeros((5, 3)))
    out = tmp_path / "OUT.json"
    result = run_cluster("--embeddings", str(emb), "--out", str(out), cwd=tmp_path)
    line = one_error_line(result)
    assert str(emb) in line
    assert not out.exists()


# ------------------------------------------------------------------------- user embeddings


def test_user_embeddings_are_normalised_means():
    rng = np.random.default_rng(3)
    vectors = {item: rng.normal(size=5).astype(np.float32) for item in (10, 20, 30, 40)}
    histories = {7: [10, 20, 20], 2: [40], 5: [10, 20, 30, 40]}
    users, emb = user_embeddings(histories, vectors)
    assert users.tolist() == [2, 5, 7]
    assert emb.shape == (3, 5) and emb.dtype == np.float32
    # float32 sums of 5 squares and of up to 4 vectors (tests/tolerances.py: terms x eps)
    tol = 2 * emb.shape[1] * EPS32
    for row, user in enumerate(users.tolist()):
        mean = np.mean([vectors[i] for i in histories[user]], axis=0)
        np.testing.assert_allclose(emb[row], mean / np.linalg.norm(mean), rtol=tol, atol=tol)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=tol)


def test_user_embeddings_empty_history_raises():
    vectors = {1: np.ones(3, dtype=np.float32)}
    with pytest.raises(PgrpoError, match=r"user 9\b.*history"):
        user_embeddings({4: [1], 9: []}, vectors)


EPS32 = np.finfo(np.float32).eps
STAR_WARS = "Star Wars (1977) [Action, Adventure, Sci-Fi]"
STAR_TREK = "Star Trek: First Contact (1996) [Action, Adventure, Sci-Fi]"
PRETTY_WOMAN = "Pretty Woman (1990) [Comedy, Romance]"


@pytest.fixture(scope="module")
def minilm_vectors() -> np.ndarray:
    return embed_texts([STAR_WARS, STAR_TREK, PRETTY_WOMAN])


def test_minilm_unit_vectors_of_dim_384(minilm_vectors):
    assert minilm_vectors.shape == (3, 384)
    assert minilm_vectors.dtype == np.float32
    # A float32 sum of 384 squares (tests/tolerances.py: terms x eps x scale 1).
    np.testing.assert_allclose(np.linalg.norm(minilm_vectors, axis=1), 1.0, atol=384 * EPS32)
    assert np.isfinite(minilm_vectors).all()


def test_minilm_deterministic_and_independent_of_batching(minilm_vectors):
    again = embed_texts([STAR_WARS, STAR_TREK, PRETTY_WOMAN], batch_size=1)
    # Other batch shapes take other kernels: rounding of the encoder's 384-wide dot products,
    # measured against the largest component (measured: 4-5 ulps of it).
    tol = 384 * EPS32 * np.abs(minilm_vectors).max()
    np.testing.assert_allclose(again, minilm_vectors, rtol=0, atol=tol)
    assert np.array_equal(embed_texts([STAR_WARS, STAR_TREK, PRETTY_WOMAN]), minilm_vectors)


def test_minilm_ranks_a_similar_movie_above_a_dissimilar_one(minilm_vectors):
    wars, trek, woman = minilm_vectors
    assert float(wars @ trek) > float(wars @ woman) + 0.1
    assert float(trek @ wars) > float(trek @ woman)
