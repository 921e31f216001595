"""Compiled batch encoder behind ``LineEncoder(..., compiled=True)`` (numba, no Python objects).

Floats are written with Grisu2 (F. Loitsch, "Printing Floating-Point Numbers Quickly and Accurately
with Integers", PLDI 2010), following Milo Yip's C++ dtoa (RapidJSON, MIT licence): the digits always
read back as the same double, and are the shortest such digits in ~99.9% of cases (else a digit or
two longer, never more than 17).  The layout copies Python's ``repr``: ``12.5``, ``42.0``,
``0.0001``, ``1e-05``, ``1e+16``.
Why compiled: ``repr`` of a 17-digit double alone takes ~0.4 µs on the target machine, so six of them
miss a 1M lines/s budget before anything else is done (benchmarks/bench_encoder.py).
Why not the default: importing numba maps llvmlite and its JIT, ~60 MB of resident memory measured
in ``pedf run`` (benchmarks/bench_pipeline.py), more than half of the gateway's < 100 MB budget;
:mod:`gateway.sinks._lineprotocol` imports this module only when the compiled encoder is asked for.
"""

from __future__ import annotations

import numba
import numpy as np


def _cached_powers() -> tuple[np.ndarray, np.ndarray]:
    """10^k for k = -348, -340, …, 340 as normalized 64-bit significands and binary exponents."""
    fs, es = [], []
    for k in range(-348, 341, 8):
        if k >= 0:
            n = 10**k
            e = n.bit_length() - 64
            f = (n + (1 << (e - 1))) >> e if e > 0 else n << -e
        else:
            d = 10**-k
            e = -(d.bit_length() + 63)
            f = ((1 << -e) + d // 2) // d
        if f >= 1 << 64:
            f, e = f >> 1, e + 1
        fs.append(f)
        es.append(e)
    return np.array(fs, dtype=np.uint64), np.array(es, dtype=np.int64)


_CF, _CE = _cached_powers()
_POW10 = np.array([10**i for i in range(20)], dtype=np.uint64)
_POW10_32 = np.array([10**i for i in range(10)], dtype=np.uint32)
_U32_0, _U32_48 = np.uint32(0), np.uint32(48)
_U = np.uint64
_FLOAT, _INT, _BOOL, _STR = 0, 1, 2, 3
_TRUE = np.frombuffer(b"true", dtype=np.uint8)
_FALSE = np.frombuffer(b"false", dtype=np.uint8)
KIND_CODE = {"float": _FLOAT, "int": _INT, "bool": _BOOL, "str": _STR}


@numba.njit(cache=True, inline="always")
def _mul(af, ae, bf, be):
    m32 = _U(0xFFFFFFFF)
    a, b, c, d = af >> _U(32), af & m32, bf >> _U(32), bf & m32
    ac, bc, ad, bd = a * c, b * c, a * d, b * d
    tmp = (bd >> _U(32)) + (ad & m32) + (bc & m32) + (_U(1) << _U(31))
    return ac + (ad >> _U(32)) + (bc >> _U(32)) + (tmp >> _U(32)), ae + be + 64


@numba.njit(cache=True, inline="always")
def _round(dig, n, delta, rest, ten_kappa, wp_w):
    while rest < wp_w and delta - rest >= ten_kappa and (
            rest + ten_kappa < wp_w or wp_w - rest > rest + ten_kappa - wp_w):
        dig[n - 1] -= 1
        rest += ten_kappa


@numba.njit(cache=True)
def _grisu2(bits, dig):
    """Digits of the positive finite double ``bits`` into ``dig``; returns (count, K): v ≈ dig × 10^K."""
    hidden = _U(0x0010000000000000)
    frac = bits & _U(0x000FFFFFFFFFFFFF)
    bexp = np.int64((bits >> _U(52)) & _U(0x7FF))
    if bexp != 0:
        f, e = frac + hidden, bexp - 1075
    else:
        f, e = frac, np.int64(-1074)
    pf, pe = (f << _U(1)) + _U(1), e - 1
    while (pf & (hidden << _U(1))) == _U(0):
        pf, pe = pf << _U(1), pe - 1
    pf, pe = pf << _U(10), pe - 10
    if f == hidden:
        mf, me = (f << _U(2)) - _U(1), e - 2
    else:
        mf, me = (f << _U(1)) - _U(1), e - 1
    mf, me = mf << _U(me - pe), pe
    wf, we = f, e
    while (wf & hidden) == _U(0):
        wf, we = wf << _U(1), we - 1
    wf, we = wf << _U(11), we - 11
    dk = (-61 - pe) * 0.30102999566398114 + 347
    k = np.int64(dk)
    if dk - k > 0.0:
        k += 1
    index = (k >> 3) + 1
    big_k = -(-348 + index * 8)
    cf, ce = _CF[index], _CE[index]
    w_f, _ = _mul(wf, we, cf, ce)
    p_f, p_e = _mul(pf, pe, cf, ce)
    m_f, _unused = _mul(mf, me, cf, ce)
    m_f += _U(1)
    p_f -= _U(1)
    delta = p_f - m_f
    # digit generation
    shift = _U(-p_e)
    one_f = _U(1) << shift
    wp_w = p_f - w_f
    p1 = np.uint32(p_f >> shift)  # 32-bit divisions below: several times cheaper than 64-bit ones
    p2 = p_f & (one_f - _U(1))
    kappa = 1
    while kappa < 10 and p1 >= _POW10_32[kappa]:
        kappa += 1
    n = 0
    while kappa > 0:
        pw = _POW10_32[kappa - 1]
        d = np.uint32(p1 // pw)
        p1 = np.uint32(p1 - d * pw)
        if d != _U32_0 or n != 0:
            dig[n] = np.uint8(d + _U32_48)
            n += 1
        kappa -= 1
        tmp = (_U(p1) << shift) + p2
        if tmp <= delta:
            _round(dig, n, delta, tmp, _POW10[kappa] << shift, wp_w)
            return n, big_k + kappa
    while True:
        p2 *= _U(10)
        delta *= _U(10)
        d = p2 >> shift
        if d != _U(0) or n != 0:
            dig[n] = _U(48) + d
            n += 1
        p2 &= one_f - _U(1)
        kappa -= 1
        if p2 < delta:
            _round(dig, n, delta, p2, one_f, wp_w * _POW10[-kappa])
            return n, big_k + kappa


@numba.njit(cache=True)
def put_int(x, out, pos):
    if x < 0:
        out[pos] = 45
        pos += 1
        u = _U(-(x + 1)) + _U(1)
    else:
        u = _U(x)
    digits = 1
    while digits < 20 and u >= _POW10[digits]:
        digits += 1
    for i in range(digits - 1, -1, -1):
        out[pos + i] = _U(48) + u % _U(10)
        u //= _U(10)
    return pos + digits


@numba.njit(cache=True, inline="always")
def _copy(src, start, stop, out, pos):
    for i in range(start, stop):
        out[pos] = src[i]
        pos += 1
    return pos


@numba.njit(cache=True)
def put_float(v, bits, out, pos, dig):
    """Layout as Python's repr where it matters to a reader: 12.5, 42.0, 0.001, 1e+300, 1.5e-07."""
    if v < 0:
        out[pos] = 45
        pos += 1
        bits &= _U(0x7FFFFFFFFFFFFFFF)
    if v == 0.0:
        out[pos], out[pos + 1], out[pos + 2] = 48, 46, 48  # "0.0"
        return pos + 3
    n, k = _grisu2(bits, dig)
    kk = n + k  # 10^(kk-1) <= v < 10^kk
    if n <= kk <= 16:
        pos = _copy(dig, 0, n, out, pos)
        for _ in range(kk - n):
            out[pos] = 48
            pos += 1
        out[pos] = 46
        out[pos + 1] = 48
        return pos + 2
    if 0 < kk <= 16:
        pos = _copy(dig, 0, kk, out, pos)
        out[pos] = 46
        return _copy(dig, kk, n, out, pos + 1)
    if -4 < kk <= 0:
        out[pos] = 48
        out[pos + 1] = 46
        pos += 2
        for _ in range(-kk):
            out[pos] = 48
            pos += 1
        return _copy(dig, 0, n, out, pos)
    out[pos] = dig[0]
    pos += 1
    if n > 1:
        out[pos] = 46
        pos = _copy(dig, 1, n, out, pos + 1)
    out[pos] = 101  # e
    x = kk - 1
    out[pos + 1] = 45 if x < 0 else 43
    pos += 2
    x = -x if x < 0 else x
    if x < 10:
        out[pos] = 48
        pos += 1
    return put_int(x, out, pos)


@numba.njit(cache=True)
def encode_batch(vals, bits, starts, ts, plan, prefixes, prefix_off, keys, key_off, field_base, kinds,
                  out, line_end):
    """Write one line per row into ``out``; line_end[r] = end offset, -1 no field left, -2 row skipped."""
    dig = np.zeros(24, dtype=np.uint8)
    dig[20], dig[21], dig[22] = 48, 46, 48
    pos = 0
    for r in range(len(plan)):
        p = plan[r]
        if p < 0:
            line_end[r] = -2
            continue
        line_start = pos
        for i in range(prefix_off[p], prefix_off[p + 1]):
            out[pos] = prefixes[i]
            pos += 1
        written = 0
        for j in range(starts[r], starts[r + 1]):
            v = vals[j]
            if v - v != 0.0:
                continue
            g = field_base[p] + j - starts[r]
            kind = kinds[g]
            if kind == 1 and not (-9.223372036854775e18 < v < 9.223372036854775e18):
                continue
            if written:
                out[pos] = 44
                pos += 1
            for i in range(key_off[g], key_off[g + 1]):
                out[pos] = keys[i]
                pos += 1
            if kind == 0:
                pos = put_float(v, bits[j], out, pos, dig)
            elif kind == 1:
                pos = put_int(np.int64(v), out, pos)
                out[pos] = 105
                pos += 1
            elif v != 0.0:
                pos = _copy(_TRUE, 0, 4, out, pos)
            else:
                pos = _copy(_FALSE, 0, 5, out, pos)
            written += 1
        if written == 0:
            pos = line_start
            line_end[r] = -1
            continue
        out[pos] = 32
        pos = put_int(ts[r], out, pos + 1)
        out[pos] = 10
        pos += 1
        line_end[r] = pos
    return pos


def format_float(v: float) -> str:
    """One double as the kernel writes it (for tests and for checking against ``repr``)."""
    out = np.zeros(32, dtype=np.uint8)
    dig = np.zeros(24, dtype=np.uint8)
    dig[20], dig[21], dig[22] = 48, 46, 48
    arr = np.array([v], dtype=np.float64)
    n = put_float(arr[0], arr.view(np.uint64)[0], out, 0, dig)
    return out[:n].tobytes().decode()


class CompiledTables:
    """The kernel's per-series tables (prefix, field keys, kinds) as flat arrays, grown as series appear."""

    def __init__(self) -> None:
        self._prefixes = bytearray()
        self._prefix_off = [0]
        self._keys = bytearray()
        self._key_off = [0]
        self._field_base: list[int] = []
        self._kinds: list[int] = []
        self._widths: list[int] = []
        self._max_len: list[int] = []
        self._tables: tuple[np.ndarray, ...] | None = None
        self._out = np.empty(0, dtype=np.uint8)  # reused output buffer

    def add(self, prefix: str, keys: tuple[str, ...], kinds: tuple[str, ...]) -> int:
        """Register a series without string fields; returns its index in the tables."""
        index = len(self._widths)
        raw_prefix, raw_keys = prefix.encode(), [k.encode() for k in keys]
        self._prefixes += raw_prefix
        self._prefix_off.append(len(self._prefixes))
        self._field_base.append(len(self._kinds))
        for raw, kind in zip(raw_keys, kinds, strict=True):
            self._keys += raw
            self._key_off.append(len(self._keys))
            self._kinds.append(KIND_CODE[kind])
        self._widths.append(len(keys))
        # longest line: prefix, every key, 26 bytes per value and separator, sign + 19 digits + space + \n
        self._max_len.append(len(raw_prefix) + sum(map(len, raw_keys)) + 26 * len(keys) + 22)
        self._tables = None
        return index

    def _arrays(self) -> tuple[np.ndarray, ...]:
        if self._tables is None:
            self._tables = (
                np.frombuffer(bytes(self._prefixes) or b"\0", dtype=np.uint8),
                np.array(self._prefix_off, dtype=np.int64),
                np.frombuffer(bytes(self._keys) or b"\0", dtype=np.uint8),
                np.array(self._key_off, dtype=np.int64),
                np.array(self._field_base or [0], dtype=np.int64),
                np.array(self._kinds or [0], dtype=np.int8),
                np.array(self._widths or [0], dtype=np.int64),
                np.array(self._max_len or [0], dtype=np.int64),
            )
        return self._tables

    def widths(self, index: np.ndarray) -> np.ndarray:
        """Fields per row (0 for rows left to Python, index -1)."""
        widths = self._arrays()[6]
        known = index >= 0
        return widths[index] if known.all() else np.where(known, widths[index], 0)

    def run(self, flat: np.ndarray, starts: np.ndarray, ts: np.ndarray,
            index: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Encode every row whose index is >= 0; returns (buffer, line ends, bytes written)."""
        prefixes, prefix_off, keys, key_off, field_base, kinds, _, max_len = self._arrays()
        known = index >= 0
        need = int((max_len[index] if known.all() else np.where(known, max_len[index], 0)).sum())
        if len(self._out) < need:
            self._out = np.empty(max(need, 2 * len(self._out)), dtype=np.uint8)
        line_end = np.empty(len(index), dtype=np.int64)
        pos = encode_batch(flat, flat.view(np.uint64), starts, ts, index, prefixes, prefix_off, keys, key_off,
                           field_base, kinds, self._out, line_end)
        return self._out, line_end, pos
