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
from collections.abc import Callable, Sequence
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
#: scikit-learn's default token pattern, and an equivalent that the regex engine runs
#: ~1.5x faster: a match of ``\\b\\w\\w+\\b`` is a whole run of word characters of length
#: >= 2, and ``findall`` with ``\\w{2,}`` can only start at the start of a run (it resumes
#: after a match or after a one-character run, i.e. at a non-word character)
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # noqa: S105 (a regex, not a secret)
_SAME_TOKENS = {DEFAULT_TOKEN_PATTERN: r"\w{2,}"}


@dataclass(frozen=True)
class HashSpec:
    """One fitted ``HashingVectorizer``'s parameters (the ones that change its features)."""

    analyzer: str
    ngram_range: tuple[int, int]
    n_features: int
    lowercase: bool = True
    token_pattern: str = DEFAULT_TOKEN_PATTERN
    alternate_sign: bool = False

    def __post_init__(self) -> None:
        low, high = self.ngram_range
        if self.analyzer not in ANALYZERS or not 1 <= low <= high or self.n_features < 1:
            raise ValueError(f"unsupported hashing parameters: {self}")


def _rotl(x: UInt32s, r: int) -> UInt32s:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


#: the bytes of a length % 4 tail, as a mask over a little-endian word
_TAIL_MASKS = np.array([0, 0xFF, 0xFFFF, 0xFFFFFF], dtype=np.uint32)


def murmurhash3_32(data: bytes, starts: Int64s, lengths: Int64s, seed: int = 0) -> UInt32s:
    """MurmurHash3 x86 32-bit of ``data[starts[i] : starts[i] + lengths[i]]`` for every i.

    Unsigned; ``.view(np.int32)`` gives scikit-learn's signed value.
    """
    order, hashes = _murmurhash3_32_sorted(data, starts, lengths, seed)
    out: UInt32s = np.empty_like(hashes)
    out[order] = hashes
    return out


def _murmurhash3_32_sorted(
    data: bytes, starts: Int64s, lengths: Int64s, seed: int = 0
) -> tuple[Int64s, UInt32s]:
    """``(order, hashes)``: the hash of key ``order[i]`` is ``hashes[i]``.

    Keys are taken in order of their number of 4-byte blocks, so that the keys which still
    have a block j are a suffix of the arrays: the loop over blocks updates views, with no
    per-block gather, scatter or filtering (~7 NumPy calls a block instead of ~19).
    """
    nblocks = lengths >> 2
    max_blocks = int(nblocks.max()) if nblocks.size else 0
    # a stable sort of small integers is NumPy's radix sort, one pass over uint8: ~15x fewer
    # instructions than the default quicksort, which does poorly on a few distinct values
    if max_blocks < 2**8:
        nblocks = nblocks.astype(np.uint8)
    elif max_blocks < 2**16:
        nblocks = nblocks.astype(np.uint16)
    order: Int64s = np.argsort(nblocks, kind="stable")
    starts, lengths, nblocks = starts[order], lengths[order], nblocks[order]
    # every byte position read as a little-endian uint32 (zero padding at the end): an
    # overlapping strided view of the bytes, copied once to aligned memory
    padded = data + b"\0\0\0\0"
    words: UInt32s = np.ndarray((len(data) + 1,), np.dtype("<u4"), padded, strides=(1,)).copy()
    h = np.full(starts.size, seed, dtype=np.uint32)
    with np.errstate(over="ignore"):
        # body: each block's k mixed once for every byte position of the buffer (cheaper
        # than per n-gram: the buffer is shorter than the n-grams laid end to end)
        k = words * _C1
        k = _rotl(k, 15)
        k *= _C2
        at = starts.copy()  # the next block of each key
        firsts = np.searchsorted(nblocks, np.arange(1, max_blocks + 1), side="left").tolist()
        for first in firsts:  # the keys with at least j + 1 blocks are h[first:]
            hv, av = h[first:], at[first:]
            hv ^= k[av]
            rolled = hv >> np.uint32(19)
            hv <<= np.uint32(13)
            hv |= rolled
            hv *= _M5
            hv += _N1
            av += 4
        # tail: the last length % 4 bytes (a zero mask when there are none)
        k1 = words[at] & _TAIL_MASKS[lengths & 3]
        k1 *= _C1
        k1 = _rotl(k1, 15)
        k1 *= _C2
        h ^= k1
        # finalisation
        h ^= lengths.astype(np.uint32)
        h ^= h >> np.uint32(16)
        h *= _F1
        h ^= h >> np.uint32(13)
        h *= _F2
        h ^= h >> np.uint32(16)
    return order, h


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


_FINDALL: dict[str, Callable[[str], list[str]]] = {}


def _findall(token_pattern: str) -> Callable[[str], list[str]]:
    findall = _FINDALL.get(token_pattern)
    if findall is None:
        findall = re.compile(_SAME_TOKENS.get(token_pattern, token_pattern)).findall
        _FINDALL[token_pattern] = findall
    return findall


def _same_segment(segment: Int64s, n: int) -> Int64s:
    """Positions i whose items i .. i+n-1 all lie in one segment (``segment`` ascending)."""
    return np.flatnonzero(segment[n - 1 :] == segment[: max(segment.size - n + 1, 0)])


def _word_spans(docs: list[str], spec: HashSpec) -> _Spans:
    findall = _findall(spec.token_pattern)
    per_doc: list[list[str]] = [findall(doc) for doc in docs]
    tokens: list[str] = list(chain.from_iterable(per_doc))
    joined = " ".join(tokens)  # token g is joined[ends[g] - lens[g] : ends[g]]
    lens = _lengths(tokens)
    ends = np.cumsum(lens + 1) - 1
    starts = ends - lens
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), _lengths(per_doc))
    low, high = spec.ngram_range
    parts_s, parts_e, parts_r = [], [], []
    for n in range(low, high + 1):
        # the n-gram starting at token g joins tokens g .. g+n-1 by single spaces, as
        # scikit-learn's " ".join(tokens[i : i + n]); in `joined` that is one contiguous span
        if n == 1:
            parts_s.append(starts)
            parts_e.append(ends)
            parts_r.append(doc_of)
            continue
        ok = _same_segment(doc_of, n)
        parts_s.append(starts[ok])
        parts_e.append(ends[ok + (n - 1)])
        parts_r.append(doc_of[ok])
    char_s, char_e = _concat(parts_s), _concat(parts_e)
    data, byte_s, byte_len = _to_bytes(joined, char_s, char_e)
    return _Spans(data, byte_s, byte_len, _concat(parts_r))


def _char_spans(docs: list[str], spec: HashSpec) -> _Spans:
    docs = [_WHITE_SPACES.sub(" ", doc) for doc in docs]
    joined = "".join(docs)
    doc_of = np.repeat(np.arange(len(docs), dtype=np.int64), _lengths(docs))  # per character
    low, high = spec.ngram_range
    parts_s, parts_e, parts_r = [], [], []
    for n in range(low, high + 1):
        ok = _same_segment(doc_of, n)  # the n-grams' first characters
        parts_s.append(ok)
        parts_e.append(ok + n)
        parts_r.append(doc_of[ok])
    char_s, char_e = _concat(parts_s), _concat(parts_e)
    data, byte_s, byte_len = _to_bytes(joined, char_s, char_e)
    return _Spans(data, byte_s, byte_len, _concat(parts_r))


def _concat(parts: list[Int64s]) -> Int64s:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


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
    ``specs`` must not be empty.
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
    width = sum(spec.n_features for spec in specs)
    sizes = [block.starts.size for block in spans]
    # one hashing pass over every n-gram of every block: the buffers laid end to end; each
    # n-gram's row and its block's first column folded into one key, rows * width + offset
    starts, keys = [], []
    base = offset = 0
    for spec, block in zip(specs, spans, strict=True):
        starts.append(block.starts + base if base else block.starts)
        base += len(block.data)
        key = block.rows * width
        if offset:
            key += offset
        keys.append(key)
        offset += spec.n_features
    order, hashes = _murmurhash3_32_sorted(
        b"".join(s.data for s in spans),
        _concat(starts),
        _concat([s.lengths for s in spans]),
    )
    signed = hashes.view(np.int32)  # in `order`, as scikit-learn's signed hash
    key = _concat(keys)[order]
    n_features = {spec.n_features for spec in specs}
    if len(n_features) == 1:
        key += _column(signed, n_features.pop())
    else:  # blocks of different widths: each n-gram's own
        n_of = np.repeat(np.array([s.n_features for s in specs], dtype=np.int64), sizes)
        key += _column(signed, n_of[order])
    values = None
    if any(spec.alternate_sign for spec in specs):
        flip = np.repeat(np.array([s.alternate_sign for s in specs]), sizes)[order]
        values = np.where(flip & (signed < 0), -1.0, 1.0)
    return _sum_duplicates(key, values, width)


def _column(signed: npt.NDArray[np.int32], n: int | Int64s) -> Int64s:
    """``abs(h) % n``, with scikit-learn's definition for -2**31 (whose abs overflows int32)."""
    if isinstance(n, int) and n & (n - 1) == 0:
        # a power of two: the low bits of abs(h) in int32, where abs(-2**31) stays -2**31,
        # whose low bits are 0, as (2**31 - 1 - (n - 1)) % n is
        index: Int64s = np.bitwise_and(np.abs(signed), np.int32(n - 1)).astype(np.int64)
        return index
    h = signed.astype(np.int64)
    return np.where(h == -(2**31), (2**31 - 1 - (n - 1)) % n, np.abs(h) % n)


def _sum_duplicates(
    key: Int64s, values: npt.NDArray[np.float64] | None, width: int
) -> tuple[Int64s, Int64s, npt.NDArray[np.float64]]:
    """Each key (row * width + column) once, in row-then-column order, with its values
    summed (None: all 1)."""
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
    if width & (width - 1) == 0:  # a power of two: a shift and a mask (no int64 division)
        shift = width.bit_length() - 1
        return unique >> shift, unique & (width - 1), summed
    rows, cols = np.divmod(unique, width)
    return rows, cols, summed
