"""scikit-learn's ``HashingVectorizer`` features for a batch of texts, with NumPy only.

A serving worker must not import scikit-learn or SciPy (together ~120 MB of a worker's
memory), yet it must produce exactly the features the model was trained on. This module
reproduces ``HashingVectorizer.transform`` (``analyzer`` ``word``, ``char`` or ``char_wb``,
any ``ngram_range``, ``lowercase``, ``token_pattern``, ``alternate_sign``) as coordinates::

    spec = HashSpec(analyzer="char", ngram_range=(4, 4), n_features=2**16)
    rows, cols, values = hash_features(["great screen", "meh"], [spec])

The text processing calls the same Python functions scikit-learn calls (``str.lower``, the
token regex, its ``\\s\\s+`` rule, ``str.split``); the murmurhash3 (x86, 32-bit, seed 0, over
the UTF-8 bytes, as signed) runs vectorised over every n-gram of the batch at once. Written by
hand because the one library that hashes (``mmh3``) takes one key per Python call, ~30x slower
for ~100 n-grams per text; tests compare it with scikit-learn's own ``murmurhash3_32`` and
the features with ``HashingVectorizer`` on the corpus and on hostile texts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import numpy.typing as npt

Int64s = npt.NDArray[np.int64]
UInt32s = npt.NDArray[np.uint32]

_C1, _C2 = np.uint32(0xCC9E2D51), np.uint32(0x1B873593)
_M5, _N1 = np.uint32(5), np.uint32(0xE6546B64)
_F1, _F2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)
_WHITE_SPACES = re.compile(r"\s\s+")  # scikit-learn's _VectorizerMixin._white_spaces
ANALYZERS = ("word", "char", "char_wb")


@dataclass(frozen=True)
class HashSpec:
    """One fitted ``HashingVectorizer``'s parameters (the ones that change its features)."""

    analyzer: str
    ngram_range: tuple[int, int]
    n_features: int
    lowercase: bool = True
    token_pattern: str = r"(?u)\b\w\w+\b"  # noqa: S105 (a regex, not a secret)
    alternate_sign: bool = False

    def __post_init__(self) -> None:
        low, high = self.ngram_range
        if self.analyzer not in ANALYZERS or not 1 <= low <= high or self.n_features < 1:
            raise ValueError(f"unsupported hashing parameters: {self}")


def _rotl(x: UInt32s, r: int) -> UInt32s:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def murmurhash3_32(data: bytes, starts: Int64s, lengths: Int64s, seed: int = 0) -> UInt32s:
    """MurmurHash3 x86 32-bit of ``data[starts[i] : starts[i] + lengths[i]]`` for every i.

    Unsigned; ``.view(np.int32)`` gives scikit-learn's signed value.
    """
    # every byte position read as a little-endian uint32 (3 zero bytes of padding at the end)
    raw: UInt32s = np.frombuffer(data + b"\0\0\0", dtype=np.uint8).astype(np.uint32)
    b8, b16, b24 = np.uint32(8), np.uint32(16), np.uint32(24)
    words: UInt32s = raw[:-3] | (raw[1:-2] << b8) | (raw[2:-1] << b16) | (raw[3:] << b24)
    if words.size == 0:
        words = np.zeros(1, dtype=np.uint32)
    nblocks = lengths >> 2
    h = np.full(starts.size, seed, dtype=np.uint32)
    with np.errstate(over="ignore"):
        # body, one 4-byte block at a time, over the tokens that still have one (a
        # shrinking subset: most n-grams are done after one or two blocks)
        todo = np.flatnonzero(nblocks > 0)
        j = 0
        while todo.size:
            k = words[starts[todo] + 4 * j] * _C1
            k = _rotl(k, 15) * _C2
            h[todo] = _rotl(h[todo] ^ k, 13) * _M5 + _N1
            j += 1
            todo = todo[nblocks[todo] > j]
        # tail: the last length % 4 bytes
        rem = (lengths & 3).astype(np.uint32)
        tail_at = np.minimum(starts + 4 * nblocks, words.size - 1)
        mask = (np.uint32(1) << (rem * np.uint32(8))) - np.uint32(1)
        k1 = _rotl((words[tail_at] & mask) * _C1, 15) * _C2
        h ^= k1
        # finalisation
        h ^= lengths.astype(np.uint32)
        h ^= h >> np.uint32(16)
        h *= _F1
        h ^= h >> np.uint32(13)
        h *= _F2
        h ^= h >> np.uint32(16)
    return h


@dataclass
class _Spans:
    """N-grams as byte spans of one buffer, with the row (text) each belongs to."""

    data: bytes
    starts: Int64s
    lengths: Int64s
    rows: Int64s


def _byte_offsets(text: str, data: bytes) -> Int64s | None:
    """Byte offset of every character of ``text`` (+ the end), or None if ASCII (identity)."""
    if len(data) == len(text):
        return None
    raw = np.frombuffer(data, dtype=np.uint8)
    starts = np.flatnonzero((raw & 0xC0) != 0x80)  # not a UTF-8 continuation byte
    return np.append(starts, len(data)).astype(np.int64)


def _segment_ids(lengths: Int64s) -> tuple[Int64s, Int64s]:
    """For segments of ``lengths`` laid end to end: each position's segment and the
    position's offset inside it."""
    total = int(lengths.sum())
    seg = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    first = np.cumsum(lengths) - lengths
    return seg, np.arange(total, dtype=np.int64) - first[seg]


def _lengths(items: Sequence[object]) -> Int64s:
    return np.fromiter(map(len, items), dtype=np.int64, count=len(items))  # type: ignore[arg-type]


def _to_bytes(text: str, char_starts: Int64s, char_ends: Int64s) -> tuple[bytes, Int64s, Int64s]:
    data = text.encode("utf-8")  # a lone surrogate raises here, as in scikit-learn
    offsets = _byte_offsets(text, data)
    if offsets is None:
        return data, char_starts, char_ends - char_starts
    return data, offsets[char_starts], offsets[char_ends] - offsets[char_starts]


def _word_spans(docs: list[str], spec: HashSpec) -> _Spans:
    findall = re.compile(spec.token_pattern).findall
    per_doc: list[list[str]] = [findall(doc) for doc in docs]
    counts = _lengths(per_doc)
    tokens: list[str] = list(chain.from_iterable(per_doc))
    joined = " ".join(tokens)  # token g is joined[start[g] : start[g] + len[g]]
    lens = _lengths(tokens)
    starts = np.cumsum(lens + 1) - (lens + 1)
    ends = starts + lens
    doc_of, local = _segment_ids(counts)
    low, high = spec.ngram_range
    parts_s, parts_e, parts_r = [], [], []
    for n in range(low, high + 1):
        # the n-gram starting at token g joins tokens g .. g+n-1 by single spaces, as
        # scikit-learn's " ".join(tokens[i : i + n]); in `joined` that is one contiguous span
        ok = np.flatnonzero(local + n <= counts[doc_of])
        parts_s.append(starts[ok])
        parts_e.append(ends[ok + n - 1])
        parts_r.append(doc_of[ok])
    char_s, char_e = np.concatenate(parts_s), np.concatenate(parts_e)
    data, byte_s, byte_len = _to_bytes(joined, char_s, char_e)
    return _Spans(data, byte_s, byte_len, np.concatenate(parts_r))


def _char_spans(docs: list[str], spec: HashSpec) -> _Spans:
    docs = [_WHITE_SPACES.sub(" ", doc) for doc in docs]
    joined = "".join(docs)
    lens = _lengths(docs)
    doc_of, local = _segment_ids(lens)
    position = np.arange(doc_of.size, dtype=np.int64)
    low, high = spec.ngram_range
    parts_s, parts_e, parts_r = [], [], []
    for n in range(low, high + 1):
        ok = np.flatnonzero(local + n <= lens[doc_of])
        parts_s.append(position[ok])
        parts_e.append(position[ok] + n)
        parts_r.append(doc_of[ok])
    char_s, char_e = np.concatenate(parts_s), np.concatenate(parts_e)
    data, byte_s, byte_len = _to_bytes(joined, char_s, char_e)
    return _Spans(data, byte_s, byte_len, np.concatenate(parts_r))


def _char_wb_spans(docs: list[str], spec: HashSpec) -> _Spans:
    """``_char_wb_ngrams``: n-grams inside each word padded with one space on each side; a
    padded word no longer than n is one n-gram (itself), and ends the loop over n for it."""
    per_doc = [_WHITE_SPACES.sub(" ", doc).split() for doc in docs]
    counts = _lengths(per_doc)
    words = [f" {w} " for w in chain.from_iterable(per_doc)]
    joined = "".join(words)
    wlens = _lengths(words)
    word_doc = np.repeat(np.arange(len(docs), dtype=np.int64), counts)
    word_start = np.cumsum(wlens) - wlens
    char_word, local = _segment_ids(wlens)
    position = np.arange(char_word.size, dtype=np.int64)
    low, high = spec.ngram_range
    parts_s, parts_e, parts_r = [], [], []
    for n in range(low, high + 1):
        ok = np.flatnonzero((wlens[char_word] > n) & (local + n <= wlens[char_word]))
        parts_s.append(position[ok])
        parts_e.append(position[ok] + n)
        parts_r.append(word_doc[char_word[ok]])
        # the first n that reaches a word's padded length takes the whole word, once
        first = np.flatnonzero((wlens <= n) & ((wlens > n - 1) | (n == low)))
        parts_s.append(word_start[first])
        parts_e.append(word_start[first] + wlens[first])
        parts_r.append(word_doc[first])
    char_s, char_e = np.concatenate(parts_s), np.concatenate(parts_e)
    data, byte_s, byte_len = _to_bytes(joined, char_s, char_e)
    return _Spans(data, byte_s, byte_len, np.concatenate(parts_r))


_SPANS = {"word": _word_spans, "char": _char_spans, "char_wb": _char_wb_spans}


def hash_features(
    texts: Sequence[str], specs: Sequence[HashSpec]
) -> tuple[Int64s, Int64s, npt.NDArray[np.float64]]:
    """The hashed n-gram features of ``texts`` under each spec, blocks side by side (as a
    ``FeatureUnion``): ``(rows, cols, values)`` with each (row, col) once, sorted by row
    then column (scikit-learn's CSR order after ``sum_duplicates``); values are summed
    counts (±1 each with ``alternate_sign``), explicit zeros kept as scikit-learn keeps them.
    """
    lowered: list[str] | None = None
    spans: list[_Spans] = []
    for spec in specs:
        if spec.lowercase:
            lowered = lowered if lowered is not None else [t.lower() for t in texts]
            docs = lowered
        else:
            docs = list(texts)
        spans.append(_SPANS[spec.analyzer](docs, spec))
    # one hashing pass over every n-gram of every block: the buffers laid end to end
    bases = np.cumsum([0] + [len(s.data) for s in spans[:-1]])
    hashes = murmurhash3_32(
        b"".join(s.data for s in spans),
        np.concatenate([s.starts + base for s, base in zip(spans, bases, strict=True)]),
        np.concatenate([s.lengths for s in spans]),
    )
    signed = hashes.view(np.int32).astype(np.int64)
    col_parts, value_parts = [], []
    at = offset = 0  # position in `signed`; column offset of the block
    for spec, block in zip(specs, spans, strict=True):
        h = signed[at : at + block.starts.size]
        at += block.starts.size
        n = spec.n_features
        # abs(h) % n, with scikit-learn's definition for -2**31 (whose abs overflows int32)
        index = np.where(h == -(2**31), (2**31 - 1 - (n - 1)) % n, np.abs(h) % n)
        col_parts.append(index + offset)
        offset += n
        if spec.alternate_sign:
            value_parts.append(np.where(h >= 0, 1.0, -1.0))
        else:
            value_parts.append(np.ones(h.size))
    return _sum_duplicates(
        np.concatenate([s.rows for s in spans]),
        np.concatenate(col_parts),
        np.concatenate(value_parts) if any(s.alternate_sign for s in specs) else None,
        offset,
    )


def _sum_duplicates(
    rows: Int64s, cols: Int64s, values: npt.NDArray[np.float64] | None, width: int
) -> tuple[Int64s, Int64s, npt.NDArray[np.float64]]:
    """Each (row, col) once, in row-then-column order, with its values summed (None: all 1)."""
    key = rows * width + cols
    if values is None:  # counts: a sort and run lengths, no inverse permutation needed
        key.sort()
        # where a new key starts, and each run's length; written out rather than with
        # np.diff(prepend=/append=), whose argument handling cost ~2.5 us per text (profiled)
        starts = np.empty(key.size, dtype=bool)
        starts[:1] = True
        np.not_equal(key[1:], key[:-1], out=starts[1:])
        first = np.flatnonzero(starts)
        unique = key[first]
        summed: npt.NDArray[np.float64] = np.empty(first.size, dtype=np.float64)
        summed[:-1] = first[1:] - first[:-1]
        summed[-1:] = key.size - first[-1:]
    else:
        unique, inverse = np.unique(key, return_inverse=True)
        summed = np.bincount(inverse, weights=values, minlength=unique.size).astype(np.float64)
    return unique // width, unique % width, summed
