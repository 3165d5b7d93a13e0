"""Exact and near-duplicate detection for short texts (datasketch MinHash LSH).

The clean stage drops duplicates so a model does not see (and an evaluation does not count) the same
example twice; the split stage uses `cross_duplicates` to find train rows that leak into
validation/test. Exact duplicates share a `normal_form`; near-duplicates are pairs whose sets of
character shingles (n-grams of the normal form) have a Jaccard similarity >= `threshold`. Character
shingles, not words, because the texts are short (tweets, intents) and a typo or a swapped word pair
must still leave most of the set intact.

Speed: shingles are hashed and MinHash signatures built with vectorised numpy (the same values
datasketch's `MinHash.update_batch` gives for the "affine32" scheme), then the rows sharing an LSH
band with a row are its candidates, and each candidate pair is checked by its exact Jaccard on the
shingle sets, which drops the false candidates that banding lets through.

Memory: rows are sketched in blocks of `_ROWS`, so the transient arrays (every window of every
form, the permuted block) are bounded by the block, not the data; what is kept for all rows is the
shingle hashes (~4 bytes a character) for the exact check and, within one list, the kept rows'
band keys (8 bytes a band) in sorted numpy arrays. datasketch's own `MinHashLSH` held ~5 KB of
Python objects per row (measured at 100k rows: ~5 GB for the index alone at 1M), so `find_duplicates`
bands the same way with its own compact index; `cross_duplicates` (reference sets are small) still
uses `MinHashLSH`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

_SCHEME = "affine32"
# Probability that the LSH proposes a pair whose Jaccard equals the threshold (see `_bands`).
_CATCH_AT_THRESHOLD = 0.98
# Shingles per block when applying the permutations: bounds memory to ~block * num_perm * 4 bytes.
_BLOCK = 65_536
# Forms sketched and matched at once, and characters shingled at once (the shingling arrays
# take ~100 bytes a character, so ~250 MB at most for a block whatever the texts' lengths).
_ROWS = 25_000
_CHARS = 2_500_000
_POLY = np.uint64(0x100000001B3)  # odd 64-bit multiplier (FNV prime) for the window polynomial
_U64 = np.uint64


class _Spacer(dict[int, "str | None"]):
    """`str.translate` table that maps punctuation, symbols, separators and controls to a space.

    Built lazily per code point (then cached) because the full Unicode table is large and most
    corpora use a few hundred code points. Invisible format characters (soft hyphen, zero-width
    space/joiner) are deleted instead, so they do not split a word in two.
    """

    def __missing__(self, code: int) -> str | None:
        category = unicodedata.category(chr(code))
        out: str | None = chr(code)
        if category == "Cf":
            out = None
        elif category[0] in "PSZC":
            out = " "
        self[code] = out
        return out


_SPACER = _Spacer()


def normal_form(text: str) -> str:
    """NFKC, casefold, strip punctuation/symbols to spaces, collapse whitespace.

    Two texts that differ only in case, punctuation, spacing or Unicode width variants (full-width
    letters, ligatures) are the same example to a model, so they share one normal form.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.translate(_SPACER).split())


@dataclass(frozen=True)
class Match:
    """One duplicate row and the kept row it duplicates."""

    index: int  # the duplicate row (position in the input list)
    duplicate_of: int  # the kept row it duplicates (position in the input list, or in `reference`)
    kind: str  # "exact" or "near"
    similarity: float  # 1.0 for exact; exact Jaccard of the shingle sets for near


def _fmix(values: np.ndarray, width: int) -> np.ndarray:
    """MurmurHash3 finalizer: the avalanching bijection datasketch applies before its permutations."""
    if width == 64:
        s, m1, m2 = _U64(33), _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53)
        values = (values ^ (values >> s)) * m1
        values = (values ^ (values >> s)) * m2
        return values ^ (values >> s)
    u = np.uint32
    values = (values ^ (values >> u(16))) * u(0x85EBCA6B)
    values = (values ^ (values >> u(13))) * u(0xC2B2AE35)
    return values ^ (values >> u(16))


class _Sketches:
    """Shingle sets (sorted unique 32-bit hashes, CSR layout) of non-empty forms, built in blocks,
    and with `bands` their LSH band keys (one row of `_band_keys` per form).

    Signatures are not kept: `signatures` derives them from the shingles of a range of forms.
    """

    def __init__(
        self,
        forms: Sequence[str],
        shingle_size: int,
        num_perm: int,
        seed: int,
        bands: tuple[int, int] | None = None,
        mapper: BlockMapper | None = None,
    ) -> None:
        """`mapper` runs the per-block work elsewhere (Ray Data); None: here, `_ROWS` forms at a time."""
        self.seed, self.num_perm = seed, num_perm
        work = partial(sketch_block, shingle_size=shingle_size, num_perm=num_perm, seed=seed, bands=bands)
        if mapper is None:
            blocks: Iterable[Block] = (work(forms[s : s + _ROWS]) for s in range(0, len(forms), _ROWS))
        else:
            blocks = mapper(work, forms)
        self.hashes, self.bounds, self.keys = _join(blocks, 0 if bands is None else bands[0])
        if self.bounds.size != len(forms) + 1 or len(self.keys) != len(forms):
            raise ValueError(f"sketched {self.bounds.size - 1} forms, expected {len(forms)}")

    def shingles(self, i: int) -> np.ndarray:
        """The sorted unique shingle hashes of form `i`."""
        return self.hashes[self.bounds[i] : self.bounds[i + 1]]

    def signatures(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """MinHash signatures of forms [start, stop), one row each."""
        stop = self.bounds.size - 1 if stop is None else stop
        bounds = self.bounds[start : stop + 1]
        return _signatures(self.hashes[bounds[0] : bounds[-1]], bounds - bounds[0], self.num_perm, self.seed)

    def jaccard(self, i: int, j: int) -> float:
        """Exact Jaccard of two shingle sets (32-bit hashes: collisions are negligible at this size)."""
        a, b = self.shingles(i), self.shingles(j)
        common = np.intersect1d(a, b, assume_unique=True).size
        return common / (a.size + b.size - common)


# One block's (shingle hashes, CSR bounds, band keys): see `sketch_block`.
Block = tuple[np.ndarray, np.ndarray, np.ndarray]
# (work on one block of forms, all the forms) -> the work's results for consecutive blocks, in order.
BlockMapper = Callable[[Callable[[Sequence[str]], Block], Sequence[str]], Iterable[Block]]


def sketch_block(
    forms: Sequence[str], *, shingle_size: int, num_perm: int, seed: int, bands: tuple[int, int] | None
) -> Block:
    """The per-row work of near-duplicate detection for one block of non-empty normal forms, a
    pure function Ray Data can map over blocks: the sorted unique shingle hashes with their CSR
    bounds, and (`bands` = (bands, rows)) each form's LSH band keys, an (n, bands) array."""
    blocks = []
    for start, stop in _char_blocks(forms):  # a few long texts must not make a huge block
        hashes, bounds = _shingle_hashes(forms[start:stop], shingle_size)
        keys = np.zeros((stop - start, 0), dtype=np.uint64)
        if bands is not None:
            keys = _band_keys(_signatures(hashes, bounds, num_perm, seed), *bands)
        blocks.append((hashes, bounds, keys))
    return _join(blocks, 0 if bands is None else bands[0])


def _char_blocks(forms: Sequence[str]) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive runs of forms with at most `_CHARS` characters in all (a
    longer form is a run of its own): the shingling arrays take ~100 bytes a character."""
    ends = np.cumsum(np.fromiter((len(f) for f in forms), dtype=np.int64, count=len(forms)))
    start = 0
    while start < len(forms):
        before = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, before + _CHARS, side="right")), start + 1)
        yield start, stop
        start = stop


def _join(blocks: Iterable[Block], bands: int) -> Block:
    """Consecutive blocks' (hashes, bounds, keys) as one: bounds offset by the hashes before."""
    hashes, offsets, keys, total = [], [np.zeros(1, dtype=np.int64)], [], 0
    for block_hashes, bounds, block_keys in blocks:
        hashes.append(block_hashes)
        offsets.append(bounds[1:].astype(np.int64) + total)
        keys.append(block_keys)
        total += int(bounds[-1])
    return (
        np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint32),
        np.concatenate(offsets),
        np.concatenate(keys) if keys else np.zeros((0, bands), dtype=np.uint64),
    )


def _shingle_hashes(forms: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash every `k`-character window of every form at once; a shorter form is one shingle.

    Returns (hashes, bounds): form `i`'s sorted unique hashes are hashes[bounds[i]:bounds[i + 1]].
    Forms are never empty here, and never contain NUL (normal_form turns controls into spaces), so
    NUL padding makes a short form its own single window.
    """
    if not forms:
        return np.zeros(0, dtype=np.uint32), np.zeros(1, dtype=np.int64)
    padded = [form.ljust(k, "\0") for form in forms]
    lengths = np.fromiter((len(p) for p in padded), dtype=np.int64, count=len(padded))
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    n_windows = codes.size - k + 1
    poly = np.zeros(max(n_windows, 0), dtype=np.uint64)
    for j in range(k):  # polynomial over the window, wrapping mod 2^64
        poly = poly * _POLY + codes[j : j + n_windows]
    counts = lengths - k + 1
    owner = np.repeat(np.arange(len(forms), dtype=np.uint64), counts)
    first_window = np.cumsum(counts) - counts
    starts = np.repeat(np.cumsum(lengths) - lengths - first_window, counts) + np.arange(counts.sum())
    hashes32 = _fmix(poly[starts], 64) >> _U64(32)
    # One sort of (form, hash) keys deduplicates shingles within each form and groups them by form.
    keys = np.sort((owner << _U64(32)) | hashes32)
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]  # np.unique is ~20x slower here
    bounds = np.searchsorted(keys >> _U64(32), np.arange(len(forms) + 1, dtype=np.uint64))
    return (keys & _U64(0xFFFFFFFF)).astype(np.uint32), bounds


def _signatures(hashes: np.ndarray, bounds: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash hash values of every shingle set, equal to datasketch's affine32 `update_batch`."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME).permutations
    mixed = _fmix(hashes, 32)
    n = bounds.size - 1
    out = np.empty((n, num_perm), dtype=np.uint32)
    start = 0
    if n == 0:
        return out
    while start < n:
        stop = int(np.searchsorted(bounds, bounds[start] + _BLOCK, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        # Permutations along rows and shingles along columns: reduceat over the contiguous axis is
        # ~50x faster than over axis 0. uint32 arithmetic wraps, which is the mod 2^32 of the scheme.
        block = a[:, None] * mixed[None, bounds[start] : bounds[stop]] + b[:, None]
        out[start:stop] = np.minimum.reduceat(block, bounds[start:stop] - bounds[start], axis=1).T
        start = stop
    return out


def _bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """LSH (bands, rows per band): the longest bands that still catch a pair at the threshold.

    A pair of Jaccard J shares a band with probability 1 - (1 - J^r)^b. datasketch's own optimum
    balances misses against false candidates and so catches a pair exactly at 0.8 only 40-74% of
    the time; here every candidate is verified exactly, so false candidates only cost time, and
    the bands are made short enough to catch a pair at the threshold with probability >= 0.98.
    """
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= _CATCH_AT_THRESHOLD:
            return bands, rows
    return num_perm, 1


def _new_lsh(threshold: float, num_perm: int) -> MinHashLSH:
    """An empty index whose bands follow `_bands`."""
    return MinHashLSH(num_perm=num_perm, params=_bands(threshold, num_perm))


def _band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (row, band): equal bands give equal keys, so no candidate MinHashLSH
    would propose is missed; a rare collision of unequal bands only adds a candidate, and every
    candidate is checked exactly."""
    values = signatures[:, : bands * rows].reshape(len(signatures), bands, rows).astype(np.uint64)
    keys = np.zeros((len(signatures), bands), dtype=np.uint64)
    for k in range(rows):
        keys = keys * _POLY + values[:, :, k]
    return _fmix(keys, 64)


class _BandIndex:
    """The band keys of kept rows, one sorted numpy array per band (12 bytes a row and band)."""

    def __init__(self, bands: int) -> None:
        self.keys = [np.zeros(0, dtype=np.uint64) for _ in range(bands)]
        self.rows = [np.zeros(0, dtype=np.int64) for _ in range(bands)]

    def candidates(self, keys: np.ndarray) -> list[list[int]]:
        """For each row of a block's `keys`, the indexed rows sharing at least one band with it."""
        found_query, found_row = [], []
        for band, (indexed, rows) in enumerate(zip(self.keys, self.rows, strict=True)):
            lo = np.searchsorted(indexed, keys[:, band], side="left")
            counts = np.searchsorted(indexed, keys[:, band], side="right") - lo
            total = int(counts.sum())
            if not total:
                continue
            query = np.repeat(np.arange(len(keys)), counts)
            run_start = np.repeat(np.cumsum(counts) - counts, counts)
            found_query.append(query)
            found_row.append(rows[np.repeat(lo, counts) + np.arange(total) - run_start])
        out: list[list[int]] = [[] for _ in range(len(keys))]
        if found_query:
            query, row = np.concatenate(found_query), np.concatenate(found_row)
            for q, r in zip(query.tolist(), row.tolist(), strict=True):
                out[q].append(r)
        return out

    def add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Index `rows` (global positions) under their band `keys` (one row of keys each)."""
        for band in range(len(self.keys)):
            order = np.argsort(keys[:, band], kind="stable")
            new_keys, new_rows = keys[order, band], rows[order]
            at = np.searchsorted(self.keys[band], new_keys, side="right")
            self.keys[band] = np.insert(self.keys[band], at, new_keys)
            self.rows[band] = np.insert(self.rows[band], at, new_rows)


def _near_in_order(sketches: _Sketches, threshold: float) -> Iterator[tuple[int, tuple[int, float] | None]]:
    """Each form in order with its best kept match at >= threshold (None: the form is kept).

    A form is compared only with forms already kept, so the first of a cluster survives: within
    a block through a dict per band, against earlier blocks through the `_BandIndex`.
    """
    bands = sketches.keys.shape[1]
    index = _BandIndex(bands)
    n = sketches.bounds.size - 1
    for start in range(0, n, _ROWS):
        keys = sketches.keys[start : start + _ROWS]
        earlier = index.candidates(keys)
        local: list[dict[int, list[int]]] = [{} for _ in range(bands)]
        kept: list[int] = []
        for offset, row_keys in enumerate(keys.tolist()):
            pos = start + offset
            candidates = set(earlier[offset])
            for band, key in enumerate(row_keys):
                candidates.update(local[band].get(key, ()))
            hit = _best_match(candidates, sketches, pos, threshold)
            if hit is None:
                kept.append(offset)
                for band, key in enumerate(row_keys):
                    local[band].setdefault(key, []).append(pos)
            yield pos, hit
        index.add(keys[kept], np.asarray(kept, dtype=np.int64) + start)


def _best_match(
    candidates: Iterable[int], sketches: _Sketches, i: int, threshold: float
) -> tuple[int, float] | None:
    """The LSH candidate most similar to form `i` at >= threshold (ties: the earliest), if any."""
    best: tuple[int, float] | None = None
    for j in candidates:
        sim = sketches.jaccard(i, j)
        if sim >= threshold and (best is None or sim > best[1] or (sim == best[1] and j < best[0])):
            best = (j, sim)
    return best


def _check(threshold: float, num_perm: int, shingle_size: int) -> None:
    """Reject settings that would make the index meaningless, naming the bad value."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be >= 2, got {num_perm}")
    if shingle_size < 1:
        raise ValueError(f"shingle_size must be >= 1, got {shingle_size}")


def find_duplicates(
    texts: Sequence[str],
    *,
    near: bool = True,
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle_size: int = 5,
    seed: int = 1,
    mapper: BlockMapper | None = None,
) -> list[Match]:
    """Within one list. Each duplicate row appears once as `index`; `duplicate_of` is always an
    earlier row that is itself kept (not a duplicate), so removing every `index` leaves one
    representative per cluster. Exact matches (same normal_form) take precedence over near.

    Rows are visited in order and a row is compared only with rows already kept, so the first
    occurrence of a cluster survives. A row whose exact twin was itself removed as a near-duplicate
    is linked, as "near", to the row that twin duplicates (the twin is not kept, so it cannot be the
    target). Empty normal forms are exact duplicates of each other only.

    `mapper` runs `sketch_block` over blocks of the distinct forms elsewhere (Ray Data, see
    `lmforge.data.on_ray`); the results are the same.

    Returns:
        The matches, sorted by `index`.
    """
    _check(threshold, num_perm, shingle_size)
    forms = [normal_form(t) for t in texts]
    first: dict[str, int] = {}
    for i, form in enumerate(forms):
        first.setdefault(form, i)
    near_of: dict[int, tuple[int, float]] = {}  # first occurrence -> (kept row, similarity)
    reps = [i for i in first.values() if forms[i]]  # in row order: dicts keep insertion order
    if near and reps:
        bands = _bands(threshold, num_perm)
        sketches = _Sketches([forms[i] for i in reps], shingle_size, num_perm, seed, bands, mapper)
        for pos, hit in _near_in_order(sketches, threshold):
            if hit is not None:
                near_of[reps[pos]] = (reps[hit[0]], hit[1])
    matches = []
    for i, form in enumerate(forms):
        rep = first[form]
        if rep in near_of:
            matches.append(Match(i, near_of[rep][0], "near", near_of[rep][1]))
        elif rep != i:
            matches.append(Match(i, rep, "exact", 1.0))
    return matches


def cross_duplicates(
    texts: Sequence[str],
    reference: Sequence[str],
    *,
    near: bool = True,
    threshold: float = 0.8,
    num_perm: int = 128,
    shingle_size: int = 5,
    seed: int = 1,
) -> list[Match]:
    """Rows of `texts` that duplicate some row of `reference` (duplicate_of indexes reference).

    Used for leakage: `texts` is train, `reference` is validation/test. A row links to the first
    reference row with the same normal form, else to the most similar reference row at >= threshold
    (ties: the earliest). Rows of `texts` are not compared with each other.

    Returns:
        The matches, sorted by `index`.
    """
    _check(threshold, num_perm, shingle_size)
    ref_first: dict[str, int] = {}
    for j, text in enumerate(reference):
        ref_first.setdefault(normal_form(text), j)
    forms = [normal_form(t) for t in texts]
    near_of: dict[str, tuple[int, float]] = {}  # text form -> (reference row, similarity)
    queries = list(dict.fromkeys(f for f in forms if f and f not in ref_first))
    indexed = [f for f in ref_first if f]
    if near and queries and indexed:
        sketches = _Sketches(indexed + queries, shingle_size, num_perm, seed)
        signatures = sketches.signatures()

        def lean(pos: int) -> LeanMinHash:
            return LeanMinHash(seed=seed, hashvalues=signatures[pos], scheme=_SCHEME)

        lsh = _new_lsh(threshold, num_perm)
        with lsh.insertion_session() as session:
            for pos in range(len(indexed)):
                session.insert(pos, lean(pos), check_duplication=False)
        for pos, form in enumerate(queries, start=len(indexed)):
            hit = _best_match(lsh.query(lean(pos)), sketches, pos, threshold)
            if hit is not None:
                near_of[form] = (ref_first[indexed[hit[0]]], hit[1])
    matches = []
    for i, form in enumerate(forms):
        if form in ref_first:
            matches.append(Match(i, ref_first[form], "exact", 1.0))
        elif form in near_of:
            matches.append(Match(i, near_of[form][0], "near", near_of[form][1]))
    return matches
