"""The clustering step's own numbers: the silhouettes that choose k, checked against
scikit-learn's silhouette_score (an independent computation)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from segcli.clusters import silhouettes


@pytest.mark.parametrize("n", [3, 5, 511, 512, 513, 1100])
def test_silhouettes_equal_scikit_learn_for_every_labeling(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 3))  # standardized features, as cluster_customers passes them
    labels = {k: rng.integers(0, k, n) for k in (2, 3, 5)}
    # scikit-learn needs 2 <= clusters < n
    labels = {k: lab for k, lab in labels.items() if 2 <= len(np.unique(lab)) < n}
    got = silhouettes(x, labels)
    assert sorted(got) == sorted(labels)
    for k, lab in labels.items():
        # float32 distances: close to sklearn's float64 (a pair of near points in a tiny
        # sample carries float32's cancellation, ~1e-4; ~1e-6 on thousands of rows)
        assert got[k] == pytest.approx(silhouette_score(x, lab), abs=2e-4 if n < 100 else 1e-5)


def test_silhouettes_of_blocks_that_do_not_divide_the_sample_equal_scikit_learn():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 3))
    labels = {k: rng.integers(0, k, 300) for k in (3, 8)}
    for block in (1, 7, 128):
        got = silhouettes(x, labels, block=block)
        for k, lab in labels.items():
            assert got[k] == pytest.approx(silhouette_score(x, lab), abs=1e-5)


def test_a_labeling_with_one_cluster_is_skipped():
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    assert silhouettes(x, {1: np.zeros(4, dtype=np.int64), 2: np.array([0, 0, 1, 1])}).keys() == {2}
