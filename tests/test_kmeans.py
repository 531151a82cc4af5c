"""segcli.kmeans against scikit-learn's KMeans, bit for bit.

segcli clusters with its own NumPy KMeans so that it does not import scikit-learn (and SciPy);
its outputs must not change by it. Every case here fits ``KMeans(n_clusters=k, random_state=seed,
n_init=2, max_iter=300)`` under one thread, as segcli ran it, and asks for the same labels,
centers, inertia and iteration count to the last bit, and the same ``predict``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from conftest import SAMPLE
from segcli import kmeans


def sklearn_fit(x: np.ndarray, k: int, seed: int) -> KMeans:
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=k, random_state=seed, n_init=2, max_iter=300).fit(x)


def ours(x: np.ndarray, k: int, seed: int) -> kmeans.KMeansResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kmeans.KMeansConvergenceWarning)
        return kmeans.fit(x, k, seed)


def assert_same(x: np.ndarray, k: int, seed: int, new: np.ndarray | None = None) -> kmeans.KMeansResult:
    """Same fit as scikit-learn's, and the same predictions on ``x`` (and ``new``)."""
    km = sklearn_fit(x, k, seed)
    got = ours(x, k, seed)
    assert got.labels.dtype == km.labels_.dtype
    assert np.array_equal(got.labels, km.labels_)
    assert np.array_equal(got.centers, km.cluster_centers_)
    assert got.inertia == km.inertia_
    assert got.n_iter == km.n_iter_
    with threadpool_limits(limits=1):
        for data in (x,) if new is None else (x, new):
            assert np.array_equal(kmeans.predict(data, got.centers), km.predict(data))
    return got


def data(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(size=(n, 3))
    if kind == "blobs":
        centers = rng.normal(scale=5.0, size=(5, 3))
        return centers[rng.integers(0, 5, n)] + rng.normal(size=(n, 3))
    if kind == "duplicates":  # few distinct rows, each many times
        base = rng.normal(size=(max(3, n // 50), 3))
        return base[rng.integers(0, len(base), n)]
    if kind == "grid":  # small integers: many identical rows and equidistant centers
        return rng.integers(0, 3, size=(n, 3)).astype(np.float64)
    if kind == "rfm":  # standardized log1p of recency, frequency, monetary as segcli fits them
        recency = rng.integers(0, 730, n)
        frequency = rng.geometric(0.35, n)
        monetary = rng.lognormal(4.0, 1.3, n) * frequency
        x = np.log1p(np.column_stack([recency, frequency, monetary]).astype(np.float64))
        std = x.std(axis=0)
        return (x - x.mean(axis=0)) / np.where(std == 0, 1.0, std)
    if kind == "outliers":
        x = rng.normal(size=(n, 3))
        x[rng.integers(0, n, 3)] *= 1000.0
        return x
    if kind == "wide":  # more features than segcli's three: the groups of four in the distances
        return rng.normal(size=(n, 9))
    raise ValueError(kind)


KINDS = ["normal", "blobs", "duplicates", "grid", "rfm", "outliers", "wide"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [10, 255, 256, 257, 513, 3000])
@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_fit_equals_scikit_learn(kind: str, n: int, k: int) -> None:
    assert_same(data(kind, n, seed=n * 10 + k), k, seed=42, new=data(kind, 300, seed=1))


@pytest.mark.parametrize("k", range(2, 9))
def test_n_equal_to_k_and_one_more(k: int) -> None:
    for n in (k, k + 1):
        for seed in (0, 1, 42):
            assert_same(data("normal", n, seed=n + seed), k, seed)


@pytest.mark.parametrize("kind", ["rfm", "blobs", "grid"])
@pytest.mark.parametrize("k", [3, 8])
def test_fit_equals_scikit_learn_on_50000_rows(kind: str, k: int) -> None:
    assert_same(data(kind, 50_000, seed=k), k, seed=42)


@pytest.mark.parametrize("k", [2, 4, 7])
def test_fortran_ordered_input(k: int) -> None:
    x = data("rfm", 2000, seed=k)
    f = np.asfortranarray(x)
    got = assert_same(f, k, seed=42)
    same = ours(x, k, 42)
    assert np.array_equal(got.labels, same.labels) and np.array_equal(got.centers, same.centers)
    assert np.array_equal(kmeans.predict(f, got.centers), kmeans.predict(x, got.centers))


def test_the_input_is_not_changed() -> None:
    x = data("blobs", 500, seed=3)
    before = x.copy()
    ours(x, 4, 42)
    assert np.array_equal(x, before)


@pytest.fixture(scope="module")
def sample_features() -> np.ndarray:
    """The standardized log1p features of sample_data/transactions.csv's purchasers, as
    cluster_customers computes them."""
    import polars as pl

    import segcli
    from segcli.clusters import _standardize, feature_matrix

    table = segcli.rfm(str(SAMPLE)).table.filter(pl.col("frequency") > 0)
    return _standardize(feature_matrix(table))


@pytest.mark.parametrize("k", range(2, 9))
@pytest.mark.parametrize("seed", [42, 7])
def test_sample_data_features(sample_features: np.ndarray, k: int, seed: int) -> None:
    assert_same(sample_features, k, seed)


def test_sample_data_as_cluster_customers_samples_it(sample_features: np.ndarray) -> None:
    """The silhouette sample's rows (sorted, seeded), fitted for each candidate k."""
    n = len(sample_features)
    rows = np.sort(np.random.default_rng(43).choice(n, n // 2, replace=False))
    for k in range(3, 9):
        assert_same(sample_features[rows], k, seed=42, new=sample_features)


def test_empty_clusters_are_relocated_as_scikit_learn_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cases where a Lloyd step leaves a cluster empty (few distinct rows, each many times): it
    takes the point farthest from its center."""
    relocated = []
    relocate = kmeans._relocate_empty_clusters

    def spy(x, centers_old, centers_new, weight_in_clusters, labels):
        empty = int((weight_in_clusters == 0).sum())
        relocate(x, centers_old, centers_new, weight_in_clusters, labels)
        relocated.append(empty - int((weight_in_clusters == 0).sum()))

    monkeypatch.setattr(kmeans, "_relocate_empty_clusters", spy)
    for n in (20, 50, 100, 300):
        for k in (5, 8):
            for seed in range(5):
                assert_same(data("duplicates", n, seed=seed), k, seed=seed)
    assert sum(relocated) > 10


def test_more_clusters_than_distinct_rows_warns_as_scikit_learn_does() -> None:
    x = np.repeat(np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]), 20, axis=0)
    np.random.default_rng(0).shuffle(x)
    with pytest.warns(ConvergenceWarning), threadpool_limits(limits=1):
        km = KMeans(n_clusters=5, random_state=42, n_init=2, max_iter=300).fit(x)
    with pytest.warns(kmeans.KMeansConvergenceWarning, match=r"distinct clusters \(3\) found smaller than n_clusters \(5\)"):
        got = kmeans.fit(x, 5, 42)
    assert np.array_equal(got.labels, km.labels_) and np.array_equal(got.centers, km.cluster_centers_)
    assert got.inertia == km.inertia_


def test_fewer_rows_than_clusters_is_an_error() -> None:
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_clusters=3"):
        kmeans.fit(np.zeros((2, 3)), 3, 42)


def test_predict_breaks_ties_towards_the_first_center() -> None:
    centers = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    x = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, -1.0, 0.0], [0.5, 0.5, 0.0]])
    assert kmeans.predict(x, centers).tolist() == [0, 0, 0, 0]
    assert kmeans.predict(np.zeros((0, 3)), centers).shape == (0,)


def test_is_same_clustering() -> None:
    a = np.array([0, 1, 1, 2, 0], dtype=np.int32)
    assert kmeans._is_same_clustering(a, np.array([2, 0, 0, 1, 2], dtype=np.int32), 3)
    assert not kmeans._is_same_clustering(a, np.array([2, 0, 1, 1, 2], dtype=np.int32), 3)
    # as scikit-learn's: a function from labels1 to labels2, not necessarily one to one
    assert kmeans._is_same_clustering(a, np.array([0, 0, 0, 0, 0], dtype=np.int32), 3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), n=st.integers(2, 1200), k=st.integers(2, 8),
       data_seed=st.integers(0, 2**32 - 1), seed=st.integers(0, 2**31 - 1), fortran=st.booleans())
def test_random_inputs_equal_scikit_learn(kind: str, n: int, k: int, data_seed: int, seed: int,
                                          fortran: bool) -> None:
    x = data(kind, max(n, k), data_seed)
    assert_same(np.asfortranarray(x) if fortran else x, k, seed)


@pytest.mark.parametrize("max_iter", [1, 2, 5])
def test_runs_cut_by_max_iter_end_with_an_e_step_as_scikit_learn_does(max_iter: int) -> None:
    x = data("blobs", 2000, seed=max_iter)
    with threadpool_limits(limits=1):
        km = KMeans(n_clusters=6, random_state=42, n_init=2, max_iter=max_iter).fit(x)
    got = kmeans.fit(x, 6, 42, max_iter=max_iter)
    assert got.n_iter == km.n_iter_ == max_iter
    assert np.array_equal(got.labels, km.labels_) and np.array_equal(got.centers, km.cluster_centers_)
    assert got.inertia == km.inertia_
