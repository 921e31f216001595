"""Columnar decoder and setpoint encoder, checked against an independent reference encoder."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus import DataType, DeviceDecoder, Point, decode_value, encode_value, encode_write, plan_requests
from gateway.errors import WriteRefused
from tests import reference_registers as ref

NUMERIC = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
ORDERS = ["big", "little"]
RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


def raw_values(dtype: str) -> st.SearchStrategy:
    if dtype == "float32":
        return st.floats(width=32, allow_nan=True, allow_infinity=True)
    if dtype == "float64":
        return st.floats(allow_nan=True, allow_infinity=True)
    lo, hi = RANGES[dtype]
    return st.integers(lo, hi)


def same_float(a: float, b: float) -> bool:
    """Bit-exact equality, any NaN equal to any NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return np.float64(a).view(np.int64) == np.float64(b).view(np.int64)


@st.composite
def device_images(draw):
    """Random points laid out with gaps, their raw values and the register image they produce."""
    n = draw(st.integers(1, 14))
    pt, ct = draw(st.sampled_from([1.0, 2.5, 100.0])), draw(st.sampled_from([1.0, 0.2, 40.0]))
    images: dict[int, dict[int, int | bool]] = {1: {}, 2: {}, 3: {}, 4: {}}
    cursor = {1: 0, 2: 0, 3: 0, 4: 0}
    points, expected, texts = [], [], []
    for i in range(n):
        kind = draw(st.sampled_from([*NUMERIC, "string", "bool_reg", "coil", "discrete"]))
        name = f"p{i}_x"
        if kind in ("coil", "discrete"):
            fc = 1 if kind == "coil" else 2
            address = cursor[fc] + draw(st.integers(0, 20))
            cursor[fc] = address + 1
            bit = draw(st.booleans())
            images[fc][address] = bit
            points.append(Point(name=name, register=kind, address=address, type="bool"))
            expected.append(1.0 if bit else 0.0)
            texts.append(None)
            continue
        fc = draw(st.sampled_from([3, 4]))
        register = "holding" if fc == 3 else "input"
        address = cursor[fc] + draw(st.integers(0, 20))
        bo = draw(st.sampled_from(ORDERS))
        if kind == "string":
            length = draw(st.integers(1, 6))
            text = draw(st.text(alphabet="abcXYZ019 _-", max_size=2 * length))
            words = ref.encode_string(text, length, bo)
            points.append(
                Point(
                    name=name, register=register, address=address, type="string", length=length, byte_order=bo
                )
            )
            expected.append(math.nan)
            texts.append(text.encode()[: 2 * length].rstrip(b"\x00 ").decode())
        elif kind == "bool_reg":
            word = draw(st.sampled_from([0, 1, 0x8000, 0xFFFF]))
            words = [word]
            points.append(Point(name=name, register=register, address=address, type="bool"))
            expected.append(1.0 if word else 0.0)
            texts.append(None)
        else:
            wo = draw(st.sampled_from(ORDERS))
            raw = draw(raw_values(kind))
            scale = draw(st.sampled_from([1.0, 1.0, 0.1, -2.0]))
            offset = draw(st.sampled_from([0.0, 0.0, -273.15, 5.0]))
            ratio = draw(st.sampled_from(["none", "none", "pt", "ct", "pt*ct"]))
            p = Point(
                name=name,
                register=register,
                address=address,
                type=kind,
                word_order=wo,
                byte_order=bo,
                scale=scale,
                offset=offset,
                ratio=ratio,
            )
            words = ref.encode(raw, kind, wo, bo)
            mul = p.multiplier(pt, ct)
            value = float(np.float64(raw)) if kind.startswith("float") else float(raw)
            value = value * mul if mul != 1.0 else value
            value = value + offset if offset != 0.0 else value
            text = None
            if raw in p.sentinels:  # the data type's "not available"
                value = math.nan
            elif kind in ("int64", "uint64") and p.field_kind == "int" and abs(raw) > 2**53:
                value, text = (math.nan, None) if raw >= 2**63 else (value, str(raw))  # exact as text
            points.append(p)
            expected.append(value)
            texts.append(text)
        for k, w in enumerate(words):
            images[fc][address + k] = w
        cursor[fc] = address + len(words)
    max_gap = draw(st.integers(0, 20))
    return points, images, expected, texts, pt, ct, max_gap


def responses_for(plan, images) -> list[list]:
    return [
        [images[r.function_code].get(a, False if r.function_code < 3 else 0) for a in range(r.address, r.end)]
        for r in plan.requests
    ]


@settings(max_examples=300, deadline=None)
@given(device_images())
def test_decode_matches_reference(case) -> None:
    points, images, expected, texts, pt, ct, max_gap = case
    plan = plan_requests(points, max_gap=max_gap, max_registers=draw_limit(points))
    decoder = DeviceDecoder(points, plan, pt_ratio=pt, ct_ratio=ct)
    responses = responses_for(plan, images)
    # pymodbus pads bit responses to whole bytes: the decoder must ignore the padding
    responses = [r + [True] * 7 if plan.requests[i].function_code < 3 else r for i, r in enumerate(responses)]
    values, got_texts = decoder.decode(responses)
    assert values.dtype == np.float64 and values.shape == (len(points),)
    for p, got, want in zip(points, values.tolist(), expected, strict=True):
        assert same_float(got, want), (p, got, want)
    if any(t is not None for t in texts):
        assert got_texts == tuple(texts)
    else:
        assert got_texts is None
    assert decoder.fields == tuple(p.name for p in points)
    assert decoder.kinds == tuple(p.field_kind for p in points)


def draw_limit(points) -> int:
    # small requests exercise the multi-request concatenation path
    return max(max(p.register_count for p in points), 7)


def test_integers_exact_below_2_53() -> None:
    values = [2**53 - 1, -(2**53) + 1, 123456789012345, -1]
    points, image, address = [], {}, 0
    for i, v in enumerate(values):
        for wo in ORDERS:
            for bo in ORDERS:
                p = Point(
                    name=f"v{i}{wo[0]}{bo[0]}_x",
                    register="holding",
                    address=address,
                    type="int64",
                    word_order=wo,
                    byte_order=bo,
                )
                points.append(p)
                for k, w in enumerate(ref.encode(v, "int64", wo, bo)):
                    image[address + k] = w
                address += 4
    plan = plan_requests(points)
    out, _ = DeviceDecoder(points, plan).decode(responses_for(plan, {3: image}))
    assert [int(x) for x in out] == [v for v in values for _ in range(4)]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(NUMERIC).flatmap(lambda t: st.tuples(st.just(t), raw_values(t))),
    st.sampled_from(ORDERS),
    st.sampled_from(ORDERS),
)
def test_scalar_registers_module_agrees_with_reference(case, wo, bo) -> None:
    dtype, raw = case
    words = ref.encode(raw, dtype, wo, bo)
    assert encode_value(raw, dtype, wo, bo) == words
    back = decode_value(words, dtype, wo, bo)
    want = ref.decode(words, dtype, wo, bo)
    if dtype.startswith("float"):
        assert same_float(float(back), float(want))
    else:
        assert back == want == raw


@given(st.text(alphabet="abcXYZ019_-", max_size=12), st.integers(1, 6), st.sampled_from(ORDERS))
def test_scalar_strings_agree_with_reference(text, length, bo) -> None:
    words = ref.encode_string(text, length, bo)
    assert encode_value(text, DataType.STRING, byte_order=bo, length=length) == words
    assert decode_value(words, DataType.STRING, byte_order=bo) == text[: 2 * length]


def _writable(type_: str = "int16", **kw) -> Point:
    return Point(name="p_set_kw", register="holding", address=10, type=type_, writable=True, **kw)


def test_encode_write_inverts_scale_ratio_offset() -> None:
    p = _writable("int32", scale=0.1, ratio="ct", offset=-5.0, word_order="little", min=-100, max=1000)
    words = encode_write(p, 95.0, ct_ratio=2.0)  # raw = (95 + 5) / (0.1 × 2) = 500
    assert words == ref.encode(500, "int32", "little", "big")
    p32 = _writable("float32", byte_order="little")
    assert encode_write(p32, 1.5) == ref.encode(1.5, "float32", "big", "little")
    coil = Point(name="relay_on", register="coil", address=3, type="bool", writable=True)
    assert encode_write(coil, True) is True
    assert encode_write(_writable("bool"), False) == [0]
    # rounding to the nearest raw step
    assert encode_write(_writable("uint16", scale=0.5), 10.3) == [21]


@pytest.mark.parametrize(
    ("point", "value", "message"),
    [
        (Point(name="p_kw", register="holding", address=1), 5, "not writable"),
        (Point(name="p_kw", register="input", address=1), 5, "not writable"),
        (_writable(min=0, max=100), 100.5, r"limits \[0.0, 100.0\]"),
        (_writable(min=0, max=100), -1, r"limits"),
        (_writable("int16"), 40000, r"int16 range \[-32768, 32767\]"),
        (_writable("uint16", scale=0.01), 700.0, r"uint16 range"),
        (_writable("float32"), 1e39, "float32 range"),
        (_writable("float32"), math.nan, "not a finite"),
        (_writable("int16"), True, "not a bool"),
    ],
)
def test_encode_write_refuses(point, value, message) -> None:
    with pytest.raises(WriteRefused, match=message) as info:
        encode_write(point, value)
    assert point.name in str(info.value) and repr(value) in str(info.value)


def test_decoder_rejects_a_plan_for_other_points() -> None:
    a = [Point(name="a_x", register="holding", address=0)]
    b = [Point(name="b_x", register="input", address=0)]
    with pytest.raises(ValueError, match="another function code"):
        DeviceDecoder(b, plan_requests(a))


@pytest.mark.parametrize("offset", [0.0, 2.5])
def test_single_type_layout_and_fresh_arrays(offset) -> None:
    # a typical meter map: one type for every point, in address order (the decoder's fast path)
    raws = [float(np.float32(1.5 * i - 7.25)) for i in range(30)]
    points = [
        Point(name=f"p{i}_kw", register="input", address=2 * i, type="float32", scale=0.1, offset=offset)
        for i in range(30)
    ]
    image = {4: {2 * i + k: w for i, r in enumerate(raws) for k, w in enumerate(ref.encode(r, "float32"))}}
    plan = plan_requests(points)
    decoder = DeviceDecoder(points, plan)
    first, texts = decoder.decode(responses_for(plan, image))
    assert texts is None
    assert first.tolist() == [r * 0.1 + offset if offset else r * 0.1 for r in raws]
    first[:] = 0.0  # the caller owns each returned array
    second, _ = decoder.decode(responses_for(plan, image))
    assert second is not first and second[1] == raws[1] * 0.1 + offset


@pytest.mark.parametrize(("word_order", "gap", "in_order"), [("big", 2, True), ("little", 2, False), ("big", 3, False)])
def test_in_order_layout_needs_no_gather(word_order, gap, in_order) -> None:
    # consecutive big-endian words fill the buffer in order: the packed registers are the values
    raws = [float(np.float32(0.37 * i - 3.0)) for i in range(20)]
    points = [Point(name=f"p{i}_kw", register="holding", address=gap * i, type="float32", word_order=word_order)
              for i in range(20)]
    image = {3: {gap * i + k: w for i, r in enumerate(raws)
                 for k, w in enumerate(ref.encode(r, "float32", word_order=word_order))}}
    plan = plan_requests(points, max_gap=4)
    decoder = DeviceDecoder(points, plan)
    assert decoder._in_order is in_order
    values, _ = decoder.decode(responses_for(plan, image))
    assert values.tolist() == raws and values.flags.writeable


def test_scaling_past_float64_range_gives_inf_quietly() -> None:
    points = [Point(name="a_x", register="holding", address=0, type="float64", scale=10.0, offset=1.0)]
    decoder = DeviceDecoder(points, plan_requests(points))
    huge = [ref.encode(1.7e308, "float64"), ref.encode(-1.7e308, "float64")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for words, want in zip(huge * 2, [math.inf, -math.inf] * 2, strict=True):  # twice: reusable
            values, _ = decoder.decode([words])
            assert values[0] == want
