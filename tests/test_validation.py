"""Tests of deepclust.validation (the input checks) and deepclust.errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from deepclust.errors import (
    DataNotFoundError,
    DeepclustError,
    InputError,
    InputTypeError,
    NotFittedError,
)
from deepclust.validation import (
    check_features,
    check_labels,
    check_n_clusters,
    check_positive_float,
    check_positive_int,
    check_random_state,
    seed_from,
)


def test_errors_are_the_builtin_kinds_callers_already_catch():
    assert issubclass(InputError, ValueError) and issubclass(InputError, DeepclustError)
    assert issubclass(DataNotFoundError, FileNotFoundError)
    assert issubclass(DataNotFoundError, DeepclustError)


def test_not_fitted_is_deepclusts_and_scikit_learns():
    # the CLI prints DeepclustError as one line; scikit-learn's tools catch NotFittedError
    assert issubclass(NotFittedError, InputError)
    assert issubclass(NotFittedError, SklearnNotFittedError)
    assert issubclass(InputTypeError, InputError) and issubclass(InputTypeError, TypeError)


# ----------------------------------------------------------------------------- check_features


def test_check_features_returns_contiguous_float_and_keeps_float32():
    X = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3))
    out = check_features(X)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, X)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_, np.float16])
def test_check_features_converts_other_numeric_dtypes_to_the_first_accepted(dtype):
    out = check_features(np.ones((3, 2), dtype=dtype))
    assert out.dtype == np.float32
    assert check_features(np.ones((3, 2), dtype=dtype), dtype=np.float64).dtype == np.float64


def test_check_features_accepts_nested_lists():
    assert check_features([[1, 2], [3, 4]]).shape == (2, 2)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.arange(5.0), "1-D.*reshape"),
        (np.zeros((2, 3, 4)), "must be 2-D.*flatten"),
        (np.zeros((0, 3)), "no rows"),
        (np.zeros((3, 0)), "no features"),
        (np.array([["a", "b"]]), "must be numeric"),
        (np.array([[1, None]], dtype=object), "must be numeric"),
        ([[1, 2], [3]], "could not be read|must be numeric"),
        (np.float64(3.0), "must be 2-D"),
    ],
)
def test_check_features_rejects_unusable_shapes_and_types(X, match):
    with pytest.raises(InputError, match=match):
        check_features(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_features_names_the_nonfinite_rows(bad):
    X = np.zeros((10, 2))
    X[3, 1] = bad
    X[7, 0] = bad
    with pytest.raises(InputError, match=r"2 row\(s\) with NaN or infinite values \(rows 3, 7\)"):
        check_features(X, name="feats")


def test_check_features_lists_at_most_five_bad_rows():
    X = np.full((8, 2), np.nan)
    with pytest.raises(InputError, match=r"rows 0, 1, 2, 3, 4 \.\.\."):
        check_features(X)


def test_check_features_allow_nonfinite_and_min_samples():
    X = np.array([[np.nan, 1.0]])
    assert np.isnan(check_features(X, allow_nonfinite=True)[0, 0])
    with pytest.raises(InputError, match="1 sample.*at least 2"):
        check_features(np.ones((1, 2)), min_samples=2)


def test_check_features_messages_carry_scikit_learns_phrases():
    with pytest.raises(InputError, match=r"0 feature\(s\) \(shape=\(12, 0\)\) while a minimum of 1"):
        check_features(np.zeros((12, 0)))
    with pytest.raises(InputError, match="Reshape your data"):
        check_features(np.ones(3))


@pytest.mark.parametrize("make", [sp.csr_matrix, sp.csr_array, sp.coo_matrix])
def test_check_features_refuses_sparse_input(make):
    with pytest.raises(InputError, match=r"sparse input is not supported.*toarray\(\)"):
        check_features(make(np.eye(3)))


def test_check_features_refuses_complex_numbers():
    with pytest.raises(InputError, match="Complex data not supported"):
        check_features(np.ones((3, 2)) + 1j)


def test_check_features_reads_object_arrays_of_numbers_only():
    out = check_features(np.arange(6).reshape(3, 2).astype(object))
    np.testing.assert_array_equal(out, np.arange(6, dtype=np.float32).reshape(3, 2))
    bad = np.ones((2, 2), dtype=object)
    bad[0, 0] = {"foo": "bar"}
    with pytest.raises(InputTypeError, match="must be numeric.*argument must be .* string.* number"):
        check_features(bad)


def test_check_positive_int_and_float():
    assert check_positive_int(np.int64(3), "n_heads") == 3
    assert check_positive_float(0.5, "base_lr") == 0.5
    for bad in (0, -1, 2.0, True, "3"):
        with pytest.raises(InputError, match="n_heads must be a positive integer"):
            check_positive_int(bad, "n_heads")
    for bad in (0, -0.1, True, "1"):
        with pytest.raises(InputError, match="base_lr must be a positive number"):
            check_positive_float(bad, "base_lr")


def test_check_features_uses_the_given_name():
    with pytest.raises(InputError, match="^embedding is 1-D"):
        check_features(np.ones(3), name="embedding")


# ----------------------------------------------------------------------------- check_n_clusters


def test_check_n_clusters_accepts_numpy_ints_up_to_n():
    assert check_n_clusters(np.int64(5), 5) == 5
    assert check_n_clusters(1, 1) == 1


@pytest.mark.parametrize(
    "k, match",
    [
        (0, "at least 1"),
        (-3, "at least 1"),
        (11, "larger than the number of samples \\(10\\)"),
        (2.0, "positive integer"),
        ("3", "positive integer"),
        (None, "positive integer"),
        (True, "positive integer"),
    ],
)
def test_check_n_clusters_rejects(k, match):
    with pytest.raises(InputError, match=match):
        check_n_clusters(k, 10)


# ----------------------------------------------------------------------------- check_labels


def test_check_labels_int_float_and_column_vectors():
    np.testing.assert_array_equal(check_labels([0, 1, 1], 3), [0, 1, 1])
    out = check_labels(np.array([[2.0], [0.0]]))
    assert out.dtype == np.int64 and out.tolist() == [2, 0]


def test_check_labels_maps_strings_to_sorted_codes():
    assert check_labels(np.array(["cat", "ant", "cat"])).tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    "y, n, match",
    [
        ([0, 1], 3, "2 entries but there are 3 samples"),
        ([0.5, 1.0], None, "must be integers"),
        ([np.nan, 1.0], None, "must be integers"),
        (np.zeros((2, 2)), None, "must be 1-D"),
    ],
)
def test_check_labels_rejects(y, n, match):
    with pytest.raises(InputError, match=match):
        check_labels(y, n)


# ----------------------------------------------------------------------------- random state


def test_check_random_state_and_seed_from():
    g = np.random.default_rng(3)
    assert check_random_state(g) is g
    assert check_random_state(5).integers(1 << 30) == np.random.default_rng(5).integers(1 << 30)
    assert isinstance(check_random_state(np.random.RandomState(0)), np.random.Generator)
    assert seed_from(7) == 7
    assert seed_from(np.random.default_rng(1)) == seed_from(np.random.default_rng(1))
    with pytest.raises(InputError, match="random_state"):
        check_random_state("seed")
