"""KMeans in NumPy, bit for bit what scikit-learn 1.9's ``KMeans`` computes.

``fit(x, k, seed)`` gives the labels, centers, inertia and iteration count of
``sklearn.cluster.KMeans(n_clusters=k, random_state=seed, n_init=2, max_iter=300).fit(x)``
(init "k-means++", algorithm "lloyd", tol 1e-4, unit sample weights, dense float64 input, one
OpenMP thread), and ``predict(x, centers)`` what its ``predict(x)`` gives, without importing
scikit-learn (and SciPy and pandas with it: 1.3 s of CPU and 110 MB at start-up).

Every floating-point operation is scikit-learn's, in its order (``sklearn/cluster/_kmeans.py``,
``_k_means_lloyd.pyx``, ``_k_means_common.pyx``):

- the NumPy parts (centering, tolerance, k-means++ seeding, the relocation of empty clusters)
  are the same NumPy expressions on the same arrays;
- the Cython parts are rewritten so that each value is rounded as the C loops round it: the
  E-step's ``|C|^2 - 2 X.C^T`` from one BLAS gemm (the dot products of a row with a center do not
  depend on how the rows are blocked), the argmin keeping the first of equal distances, the
  centers' sums in row order (``np.bincount``: with one thread the Cython loop adds every row in
  order into one buffer), averaged by multiplying with ``1 / count``, the squared distances of
  ``_euclidean_dense_dense`` (features in groups of four, then the rest) and the inertia summed
  in row order.

BLAS runs on one thread here (``threadpool_limits``): a gemm gives the same numbers on any number
of threads, but the dot products of the k-means++ potential are split between threads.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["KMeansResult", "fit", "predict", "KMeansConvergenceWarning"]

# rows per block of the E-step (scikit-learn's chunks are 256 rows; the values do not depend
# on the block, and a bigger block is faster in NumPy)
BLOCK = 8192


class KMeansConvergenceWarning(UserWarning):
    """Fewer distinct clusters than asked for (scikit-learn's ConvergenceWarning)."""


@dataclass
class KMeansResult:
    """What ``KMeans.fit`` leaves: ``labels_`` (int32), ``cluster_centers_``, ``inertia_``, ``n_iter_``."""

    labels: np.ndarray
    centers: np.ndarray
    inertia: float
    n_iter: int


def fit(x: np.ndarray, k: int, seed: int, *, n_init: int = 2, max_iter: int = 300,
        tol: float = 1e-4) -> KMeansResult:
    """``KMeans(n_clusters=k, random_state=seed, n_init=n_init, max_iter=max_iter, tol=tol).fit(x)``.

    ``x``: (n, features), any order; converted to C-ordered float64 (a copy, as scikit-learn's
    ``copy_x``). Raises ``ValueError`` when n < k, as scikit-learn does.
    """
    # validate_data(order="C", copy=True)
    xc = np.array(x, dtype=np.float64, order="C", copy=True)
    if xc.ndim != 2:
        raise ValueError(f"expected a 2-d array, got {xc.ndim}-d")
    n = xc.shape[0]
    if n < k:
        raise ValueError(f"n_samples={n} should be >= n_clusters={k}.")
    if k < 1:
        raise ValueError(f"n_clusters={k} should be >= 1.")
    if not np.isfinite(xc).all():
        raise ValueError("Input contains NaN or infinity.")
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(xc, k, seed, n_init, max_iter, tol)


def _fit(x: np.ndarray, k: int, seed: int, n_init: int, max_iter: int, tol: float) -> KMeansResult:
    tol_scaled = np.mean(np.var(x, axis=0)) * tol if tol != 0 else 0
    random_state = np.random.RandomState(seed)
    sample_weight = np.ones(x.shape[0], dtype=x.dtype)
    # subtract the mean of x for more accurate distance computations
    x_mean = x.mean(axis=0)
    x -= x_mean
    x_squared_norms = _row_norms(x)

    best: tuple[np.ndarray, np.ndarray, float, int] | None = None
    for _ in range(n_init):
        centers_init = _kmeans_plusplus(x, k, x_squared_norms, sample_weight, random_state)
        labels, inertia, centers, n_iter = _lloyd(x, centers_init, max_iter, tol_scaled)
        # a new run wins with a lower inertia unless it is the same clustering (up to a
        # permutation of the labels: the inertia can differ by rounding alone)
        if best is None or (inertia < best[2] and not _is_same_clustering(labels, best[0], k)):
            best = (labels, centers, inertia, n_iter)
    assert best is not None
    labels, centers, inertia, n_iter = best
    centers += x_mean
    distinct = len(np.unique(labels))
    if distinct < k:
        warnings.warn(f"Number of distinct clusters ({distinct}) found smaller than n_clusters ({k}). "
                      "Possibly due to duplicate points in X.", KMeansConvergenceWarning, stacklevel=3)
    return KMeansResult(labels, centers, inertia, n_iter)


def predict(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """``KMeans.predict(x)`` for a model with ``cluster_centers_ = centers``: the nearest
    center of each row (the first of equal ones), int32."""
    xc = np.asarray(x, dtype=np.float64, order="C")
    with threadpool_limits(limits=1, user_api="blas"):
        c = np.ascontiguousarray(centers, dtype=np.float64)
        return _EStep(xc.shape[0], c.shape[0]).labels(xc, c)


def _row_norms(x: np.ndarray) -> np.ndarray:
    """sklearn.utils.extmath.row_norms(x, squared=True)."""
    return np.einsum("ij,ij->i", x, x)


def _euclidean_distances(x: np.ndarray, y: np.ndarray, y_norm_squared: np.ndarray) -> np.ndarray:
    """sklearn.metrics.pairwise._euclidean_distances(x, y, Y_norm_squared=..., squared=True)
    for float64 arrays (``x`` is not ``y``)."""
    xx = _row_norms(x)[:, None]
    yy = y_norm_squared.reshape(1, -1)
    distances = -2 * (x @ y.T)
    distances += xx
    distances += yy
    np.maximum(distances, 0, out=distances)
    return distances


def _kmeans_plusplus(x: np.ndarray, n_clusters: int, x_squared_norms: np.ndarray,
                     sample_weight: np.ndarray, random_state: np.random.RandomState) -> np.ndarray:
    """sklearn.cluster._kmeans._kmeans_plusplus, dense input: the greedy k-means++ seeding."""
    n_samples, n_features = x.shape
    centers = np.empty((n_clusters, n_features), dtype=x.dtype)
    n_local_trials = 2 + int(np.log(n_clusters))
    center_id = random_state.choice(n_samples, p=sample_weight / sample_weight.sum())
    centers[0] = x[center_id]
    closest_dist_sq = _euclidean_distances(centers[0, np.newaxis], x, x_squared_norms)
    current_pot = closest_dist_sq @ sample_weight
    for c in range(1, n_clusters):
        # candidates drawn with probability proportional to the squared distance to the
        # closest center so far
        rand_vals = random_state.uniform(size=n_local_trials) * current_pot
        candidate_ids = np.searchsorted(np.cumsum(sample_weight * closest_dist_sq), rand_vals)
        np.clip(candidate_ids, None, closest_dist_sq.size - 1, out=candidate_ids)
        distance_to_candidates = _euclidean_distances(x[candidate_ids], x, x_squared_norms)
        np.minimum(closest_dist_sq, distance_to_candidates, out=distance_to_candidates)
        candidates_pot = distance_to_candidates @ sample_weight.reshape(-1, 1)
        best_candidate = np.argmin(candidates_pot)
        current_pot = candidates_pot[best_candidate]
        closest_dist_sq = distance_to_candidates[best_candidate]
        centers[c] = x[candidate_ids[best_candidate]]
    return centers


class _EStep:
    """The E-step of lloyd_iter_chunked_dense: the nearest center of each row, with buffers
    made once per run (fresh pages for every step cost more than the arithmetic on them)."""

    def __init__(self, n: int, n_clusters: int) -> None:
        rows = max(1, min(BLOCK, n))
        self.dots = np.empty((rows, n_clusters), dtype=np.float64)
        # the distances one center a row, so that the argmin runs along rows (NumPy's argmin
        # over the k values of each sample costs twice as much)
        self.dist = np.empty((n_clusters, rows), dtype=np.float64)
        self.best = np.empty(rows, dtype=np.float64)
        self.closer = np.empty(rows, dtype=bool)

    def labels(self, x: np.ndarray, centers: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """argmin over centers of |C|^2 - 2 x.C^T (the row's own |x|^2 left out), the first
        center on ties; int32 as scikit-learn's labels (into ``out`` if given).

        scikit-learn fills the distances with |C|^2 and adds -2 x.C^T with one gemm (beta = 1):
        |C|^2 + (-2 * dot), the dot products as BLAS sums them, the -2 exact. Here x @ C^T,
        not C @ x^T: BLAS sums 8 or more features in another order when the operands swap.
        """
        n = x.shape[0]
        n_clusters = centers.shape[0]
        labels = np.empty(n, dtype=np.int32) if out is None else out
        centers_squared_norms = _row_norms(centers)[:, None]
        ct = centers.T
        rows = self.best.shape[0]
        for start in range(0, n, rows):
            end = min(start + rows, n)
            m = end - start
            dots = self.dots[:m]
            np.matmul(x[start:end], ct, out=dots)
            d = self.dist[:, :m]
            np.multiply(dots.T, -2.0, out=d)
            d += centers_squared_norms
            lab, best, closer = labels[start:end], self.best[:m], self.closer[:m]
            lab[:] = 0
            best[:] = d[0]
            for j in range(1, n_clusters):  # strictly smaller: the first center wins a tie
                np.less(d[j], best, out=closer)
                np.minimum(best, d[j], out=best)
                np.putmask(lab, closer, j)
        return labels


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """_euclidean_dense_dense(a[i], b[i], squared=True) for each row: the squared differences
    summed in groups of four features, ((d0 + d1) + d2) + d3, each group added to the running
    sum, then the remaining features one by one."""
    d = a - b
    d *= d
    n_features = d.shape[1]
    result = np.zeros(d.shape[0], dtype=d.dtype)
    full = n_features // 4 * 4
    for j in range(0, full, 4):
        result += ((d[:, j] + d[:, j + 1]) + d[:, j + 2]) + d[:, j + 3]
    for j in range(full, n_features):
        result += d[:, j]
    return result


def _inertia(x: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> float:
    """_inertia_dense with unit weights on one thread: the squared distances to the own center
    added in row order (a running sum, not NumPy's pairwise sum)."""
    sq = _sq_distances(x, centers[labels])
    if sq.size == 0:
        return 0.0
    return float(np.add.accumulate(sq)[-1])


def _lloyd_step(x: np.ndarray, xt: np.ndarray, centers_old: np.ndarray, e_step: _EStep,
                labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One lloyd_iter_chunked_dense (update_centers=True): the labels into ``labels``, returns
    the new centers and the center shift (``xt``: ``x`` transposed, contiguous, for the sums)."""
    n_clusters, n_features = centers_old.shape
    e_step.labels(x, centers_old, out=labels)
    # sums in row order into zeros, as the one thread's buffer adds them (weights are 1.0)
    weight_in_clusters = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    centers_new = np.empty_like(centers_old)
    for j in range(n_features):
        centers_new[:, j] = np.bincount(labels, weights=xt[j], minlength=n_clusters)
    _relocate_empty_clusters(x, centers_old, centers_new, weight_in_clusters, labels)
    _average_centers(centers_new, weight_in_clusters)
    center_shift = np.sqrt(_sq_distances(centers_new, centers_old))
    return centers_new, center_shift


def _relocate_empty_clusters(x: np.ndarray, centers_old: np.ndarray, centers_new: np.ndarray,
                             weight_in_clusters: np.ndarray, labels: np.ndarray) -> None:
    """_relocate_empty_clusters_dense: each empty cluster takes one of the points farthest from
    their centers (unit weights)."""
    empty_clusters = np.where(np.equal(weight_in_clusters, 0))[0].astype(np.int32)
    n_empty = empty_clusters.shape[0]
    if n_empty == 0:
        return
    distances = ((np.asarray(x) - np.asarray(centers_old)[labels]) ** 2).sum(axis=1)
    far_from_centers = np.argpartition(distances, -n_empty)[:-n_empty - 1:-1].astype(np.int32)
    if np.max(distances) == 0:
        # more clusters than distinct points: relocating is pointless
        return
    for idx in range(n_empty):
        new_cluster_id = empty_clusters[idx]
        far_idx = far_from_centers[idx]
        old_cluster_id = labels[far_idx]
        centers_new[old_cluster_id] -= x[far_idx] * 1.0
        centers_new[new_cluster_id] = x[far_idx] * 1.0
        weight_in_clusters[new_cluster_id] = 1.0
        weight_in_clusters[old_cluster_id] -= 1.0


def _average_centers(centers: np.ndarray, weight_in_clusters: np.ndarray) -> None:
    """_average_centers: sums times 1 / weight; an empty cluster takes the center of the
    heaviest one (as it stands at that point of the loop)."""
    argmax_weight = np.argmax(weight_in_clusters)
    for j in range(centers.shape[0]):
        if weight_in_clusters[j] > 0:
            centers[j] *= 1.0 / weight_in_clusters[j]
        else:
            centers[j] = centers[argmax_weight]


def _lloyd(x: np.ndarray, centers_init: np.ndarray, max_iter: int,
           tol: float) -> tuple[np.ndarray, float, np.ndarray, int]:
    """_kmeans_single_lloyd: iterate until the labels repeat (strict convergence) or the
    centers move less than ``tol``, then (unless strict) one more E-step so that the labels
    match the centers."""
    centers = centers_init
    xt = np.ascontiguousarray(x.T)
    e_step = _EStep(x.shape[0], centers.shape[0])
    # two label buffers, written in turn (scikit-learn's labels and labels_old)
    labels = np.full(x.shape[0], -1, dtype=np.int32)
    labels_old = labels.copy()
    strict_convergence = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        centers, center_shift = _lloyd_step(x, xt, centers, e_step, labels)
        if np.array_equal(labels, labels_old):
            strict_convergence = True
            break
        center_shift_tot = (center_shift ** 2).sum()
        if center_shift_tot <= tol:
            break
        labels, labels_old = labels_old, labels
    if not strict_convergence:
        e_step.labels(x, centers, out=labels)
    inertia = _inertia(x, centers, labels)
    return labels, inertia, centers, n_iter


def _is_same_clustering(labels1: np.ndarray, labels2: np.ndarray, n_clusters: int) -> bool:
    """_is_same_clustering: each label of ``labels1`` always meets the same label of ``labels2``."""
    values, first = np.unique(labels1, return_index=True)  # the first row of each label
    mapping = np.full(n_clusters, -1, dtype=np.int64)
    mapping[values] = labels2[first]
    return bool(np.array_equal(mapping[labels1], labels2))
