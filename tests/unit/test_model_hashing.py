"""NumPy hashing equals scikit-learn's HashingVectorizer, feature for feature.

The reference is scikit-learn itself (``murmurhash3_32`` and ``HashingVectorizer.transform``),
run in the same test on the same texts: the whole shipped corpus, texts chosen to break
tokenisation (whitespace runs, non-ASCII, case mappings that change length, emoji with
modifiers and joiners, 10,000 characters), and random Unicode from hypothesis.
"""

from __future__ import annotations

import random
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.utils import murmurhash3_32 as sklearn_murmurhash3_32

from falcon_platform.model.hashing import (
    DEFAULT_TOKEN_PATTERN,
    HashSpec,
    _column,
    _findall,
    hash_features,
    murmurhash3_32,
)
from falcon_platform.model.training import default_corpus_path, load_corpus

HOSTILE = [
    "",
    "a",
    "ab",
    "abc",
    " ",
    "\t",
    "\n\n\n",
    "  tabs\tand\n\nnewlines   and   runs  ",
    "one\ttab, one\nnewline, one\rreturn, \x0bvt \x0cff \x1cfs \x85nel \u2028ls",
    "Ünïcödé CAFÉ naïve — 日本語のテキスト",
    "İstanbul ΣΊΣΥΦΟΣ straße ﬁne ǅ",  # lower() changes the length of İ
    "great 👍🏽 service, family 👨‍👩‍👧 loved it 😀😀😀",
    "مرحبا بالعالم great",
    "\u00a0nbsp\u2003em\u3000ideographic\u202fnarrow",
    "a\u200bb\u0301c\u200dd \ufeffbom",
    "snake_case_words and digits 12345 6789",
    "x" * 10_000,
    "word " * 2_000,
    "é" * 5_000,
    "🙂" * 2_500,
    "a b c d e f g h",
    "!!! ??? ... ---",
]

SPECS = [
    HashSpec("word", (1, 2), 2**16),
    HashSpec("word", (1, 1), 2**10, alternate_sign=True),
    HashSpec("word", (2, 3), 2**18, lowercase=False),
    HashSpec("word", (1, 2), 997, token_pattern=r"(?u)\b\w+\b"),
    HashSpec("char", (4, 4), 2**16),
    HashSpec("char", (1, 5), 2**20),
    HashSpec("char", (3, 5), 2**12, lowercase=False, alternate_sign=True),
    HashSpec("char_wb", (2, 5), 2**16),
    HashSpec("char_wb", (3, 3), 2**16, alternate_sign=True),
    HashSpec("char_wb", (1, 1), 101),
]


def vectorizer(spec: HashSpec) -> HashingVectorizer:
    return HashingVectorizer(
        analyzer=spec.analyzer,
        ngram_range=spec.ngram_range,
        n_features=spec.n_features,
        lowercase=spec.lowercase,
        token_pattern=spec.token_pattern,
        alternate_sign=spec.alternate_sign,
        norm=None,
        dtype=np.float32,
    )


def assert_same_features(texts: list[str], specs: list[HashSpec]) -> None:
    """Our (rows, cols, values) against scikit-learn's CSR matrix (blocks side by side)."""
    import scipy.sparse as sp

    expected = sp.hstack([vectorizer(s).transform(texts) for s in specs], format="csr")
    rows, cols, values = hash_features(texts, specs)
    expected_rows = np.repeat(np.arange(len(texts)), np.diff(expected.indptr))
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(cols, expected.indices)
    np.testing.assert_array_equal(values.astype(np.float32), expected.data)


def test_murmurhash_equals_scikit_learns_for_every_length_and_seed() -> None:
    rng = random.Random(17)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(70) for _ in range(8)]
    keys += [bytes(rng.randrange(256) for _ in range(n)) for n in (255, 256, 1001, 4099)]
    keys += ["ünïcode 👍🏽".encode(), b"\x00\x00\x00\x00", b"\xff" * 7]
    lengths = np.array([len(k) for k in keys], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    for seed in (0, 42, 2**32 - 1):
        ours = murmurhash3_32(b"".join(keys), starts, lengths, seed=seed).view(np.int32)
        theirs = [sklearn_murmurhash3_32(k, seed=seed) for k in keys]
        assert ours.tolist() == theirs


def test_murmurhash_of_keys_in_any_order_and_overlapping() -> None:
    """Keys are hashed grouped by block count internally; answers come back in key order,
    also for keys that overlap in the buffer or repeat."""
    rng = random.Random(5)
    data = bytes(rng.randrange(256) for _ in range(3000))
    lengths = np.array([rng.randrange(0, 40) for _ in range(2000)], dtype=np.int64)
    starts = np.array([rng.randrange(0, 3000 - int(n) + 1) for n in lengths], dtype=np.int64)
    ours = murmurhash3_32(data, starts, lengths, seed=7).view(np.int32)
    theirs = [
        sklearn_murmurhash3_32(data[s : s + n], seed=7)
        for s, n in zip(starts, lengths, strict=True)
    ]
    assert ours.tolist() == theirs


def test_murmurhash_of_keys_of_every_block_count_width() -> None:
    """Block counts are sorted as uint8 below 256, uint16 below 65,536, int64 above."""
    rng = random.Random(6)
    for longest in (1_000, 40_001, 2**18 + 7):  # 250, 10,000 and 65,537 blocks
        data = rng.randbytes(longest)
        lengths = np.array([0, 3, 4, longest, longest - 1, 17], dtype=np.int64)
        starts = np.zeros(lengths.size, dtype=np.int64)
        ours = murmurhash3_32(data, starts, lengths).view(np.int32).tolist()
        assert ours == [sklearn_murmurhash3_32(data[:n]) for n in lengths.tolist()]


def test_the_column_of_every_hash_is_scikit_learns_also_for_int32_min() -> None:
    """abs(h) % n, where abs(-2**31) overflows int32: scikit-learn's value for it is
    (2**31 - 1 - (n - 1)) % n; powers of two take a bit-mask path, other widths another."""
    hashes = np.array([-(2**31), 2**31 - 1, -5, -1, 0, 1, 7, 123456789], dtype=np.int32)
    for n in (1, 2, 101, 997, 2**10, 2**16, 2**20, 2**31 - 1):
        expected = [(2**31 - 1 - (n - 1)) % n if h == -(2**31) else abs(int(h)) % n
                    for h in hashes]  # fmt: skip
        assert _column(hashes, n).tolist() == expected, n
        assert _column(hashes, np.full(hashes.size, n, dtype=np.int64)).tolist() == expected


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80))
def test_the_faster_equivalent_of_the_default_token_pattern_finds_the_same_tokens(
    text: str,
) -> None:
    """The default pattern runs as \\w{2,}: the same tokens on any text."""
    for t in (text, text.lower(), *HOSTILE):
        assert _findall(DEFAULT_TOKEN_PATTERN)(t) == re.findall(DEFAULT_TOKEN_PATTERN, t)
    other = r"(?u)\b\w+\b"  # any other pattern runs as given
    assert _findall(other)(text) == re.findall(other, text)


def test_murmurhash_of_nothing_is_empty() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert murmurhash3_32(b"", empty, empty).size == 0


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.analyzer}{s.ngram_range}")
def test_features_equal_hashing_vectorizer_on_the_corpus_and_hostile_texts(spec: HashSpec) -> None:
    texts = [*load_corpus(default_corpus_path()).texts, *HOSTILE]
    assert_same_features(texts, [spec])


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_each_hostile_text_alone_equals_hashing_vectorizer(text: str) -> None:
    """One text per call: no help from the batch (offsets start at 0, tiny buffers)."""
    assert_same_features([text], [SPECS[0], SPECS[4], SPECS[7]])


def test_blocks_side_by_side_equal_a_feature_union_of_vectorizers() -> None:
    texts = ["great screen but the battery died", "", *HOSTILE[8:14]]
    assert_same_features(texts, [SPECS[0], SPECS[4]])
    assert_same_features(texts, [SPECS[2], SPECS[6], SPECS[8]])


def test_a_lone_surrogate_is_treated_as_scikit_learn_treats_it() -> None:
    """Not a word character, so words skip it; a character n-gram holding it cannot be
    encoded as UTF-8 and both refuse (the serving layer never passes one: JSON parsing
    rejects lone surrogates first)."""
    text = "bad \ud800 surrogate"
    assert_same_features([text], [SPECS[0]])
    with pytest.raises(UnicodeEncodeError):
        vectorizer(SPECS[4]).transform([text])
    with pytest.raises(UnicodeEncodeError):
        hash_features([text], [SPECS[4]])


def test_an_empty_batch_has_no_features() -> None:
    rows, cols, values = hash_features([], [SPECS[0], SPECS[4]])
    assert rows.size == cols.size == values.size == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.text(max_size=60), min_size=1, max_size=6))
def test_random_unicode_equals_hashing_vectorizer(texts: list[str]) -> None:
    assert_same_features(texts, [SPECS[0], SPECS[5], SPECS[8]])


def test_unsupported_parameters_are_refused_at_construction() -> None:
    bad: list[dict[str, Any]] = [
        {"analyzer": "sentence", "ngram_range": (1, 1), "n_features": 8},
        {"analyzer": "word", "ngram_range": (0, 1), "n_features": 8},
        {"analyzer": "word", "ngram_range": (2, 1), "n_features": 8},
        {"analyzer": "char", "ngram_range": (1, 1), "n_features": 0},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError, match="unsupported hashing parameters"):
            HashSpec(**kwargs)
