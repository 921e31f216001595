"""Register maps that cannot be what was meant: overlapping points and holes outside the address
space are errors, a CT/PT ratio no point uses is a warning, for inline points and profiles alike;
and every numeric field of the site file has a range, listed in docs/configuration.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_site
from gateway.config._ranges import BEGIN, END, numeric_fields, render
from gateway.errors import ConfigError

from .test_config import DEVICE, HEAD

ROOT = Path(__file__).resolve().parent.parent
POINT = "      - {name: p_kw, register: holding, address: 0, type: float32}\n"
PROFILE = """\
name: custom
description: a meter with a custom map
device_class: meter
sources: [test]
points:
  - {name: p_kw, register: input, address: 10, type: float32}
  - {name: i_a, register: input, address: 12, type: float32, ratio: ct}
"""


def _site(tmp_path: Path, text: str) -> Path:
    site = tmp_path / "s.yaml"
    site.write_text(text)
    return site


def _problems(site: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_site(site, environ={})
    return [str(p) for p in info.value.problems]


def test_overlapping_inline_points_are_an_error(tmp_path: Path) -> None:
    site = _site(tmp_path, HEAD + DEVICE + "      - {name: q_kvar, register: holding, address: 1, type: float32}\n")
    assert _problems(site) == [f"{site}:18: devices[0].points[1]: q_kvar overlaps p_kw at holding 1"]


def test_a_point_inside_a_long_string_is_an_overlap(tmp_path: Path) -> None:
    site = _site(tmp_path, HEAD + DEVICE
                 + "      - {name: serial_no, register: holding, address: 10, type: string, length: 10}\n"
                 + "      - {name: fw_version, register: holding, address: 14, type: uint16}\n"
                 + "      - {name: hw_version, register: holding, address: 18, type: uint16}\n")
    assert [p.split(": ", 2)[1:] for p in _problems(site)] == [
        ["devices[0].points[2]", "fw_version overlaps serial_no at holding 14"],
        ["devices[0].points[3]", "hw_version overlaps serial_no at holding 18"],
    ]


def test_points_of_different_register_types_do_not_overlap(tmp_path: Path) -> None:
    site = _site(tmp_path, HEAD + DEVICE + "      - {name: q_kvar, register: input, address: 0, type: float32}\n")
    assert len(load_site(site, environ={}).devices[0].points) == 2


def test_inline_points_overlapping_a_profile_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "custom.yaml").write_text(PROFILE)
    device = DEVICE.replace("device_class: meter", "profile: custom.yaml").replace(POINT, "")
    site = _site(tmp_path, HEAD + device + "      - {name: e_kwh, register: input, address: 11, type: uint16}\n")
    assert _problems(site) == [f"{site}:17: devices[0].points[0]: e_kwh overlaps p_kw at input 11"]


def test_a_profile_hole_beyond_the_address_space_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "custom.yaml").write_text(PROFILE + "holes:\n  - {register: input, address: 65530, count: 10}\n")
    site = _site(tmp_path, HEAD + DEVICE.split("    points:")[0].replace("device_class: meter", "profile: custom.yaml"))
    (problem,) = _problems(site)
    assert problem == f"{site}:14: devices[0].profile: hole FC04@65530..65540 lies outside 0..65535"


@pytest.mark.parametrize("where", ["inline", "profile"])
def test_a_point_beyond_register_65535_is_an_error(tmp_path: Path, where: str) -> None:
    beyond = "{name: serial_no, register: holding, address: 65530, type: string, length: 10}"
    if where == "inline":
        site = _site(tmp_path, HEAD + DEVICE + f"      - {beyond}\n")
        expected = (17 + 1, "devices[0].points[1]")
    else:
        (tmp_path / "custom.yaml").write_text(PROFILE + f"  - {beyond}\n")
        site = _site(tmp_path, HEAD + DEVICE.split("    points:")[0].replace("device_class: meter", "profile: custom.yaml"))
        expected = (14, "devices[0].profile")
    (problem,) = _problems(site)
    assert problem.startswith(f"{site}:{expected[0]}: {expected[1]}") and "past register 65535" in problem


def test_a_ct_ratio_no_point_uses_is_a_warning_of_pedf_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = _site(tmp_path, HEAD + DEVICE + "    ct_ratio: 40\n")
    assert main(["check", str(site)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {site}:18: devices[0].ct_ratio: ct_ratio 40 is set but no point scales with it" in out
    assert "configuration is valid" in out


def test_a_ct_ratio_a_profile_point_uses_is_no_warning(tmp_path: Path) -> None:
    (tmp_path / "custom.yaml").write_text(PROFILE)
    device = DEVICE.split("    points:")[0].replace("device_class: meter", "profile: custom.yaml")
    site = _site(tmp_path, HEAD + device + "    ct_ratio: 40\n    pt_ratio: 100\n")
    warnings = [str(w) for w in load_site(site, environ={}).warnings]
    assert warnings == [f"{site}:17: devices[0].pt_ratio: pt_ratio 100 is set but no point scales with it "
                        "(ratio: pt or pt*ct); it has no effect"]


def test_every_numeric_field_has_a_range_listed_in_the_docs() -> None:
    unbounded = [f.path for f in numeric_fields() if f.low is None or f.high is None]
    assert not unbounded, f"give these fields a range (Field(ge=..., le=...)): {unbounded}"
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    table = doc.split(BEGIN)[1].split(END)[0].strip()
    assert table == render(), "regenerate: python -m gateway.config._ranges --write docs/configuration.md"
    assert {"`devices[].interval_s`", "`journal.max_mb`", "`devices[].points[].scale`"} <= set(table.split())


def test_a_profile_file_takes_nothing_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "custom.yaml").write_text(PROFILE.replace("a meter with a custom map", "'costs ${PRICE}'"))
    site = _site(tmp_path, HEAD + DEVICE.split("    points:")[0].replace("device_class: meter", "profile: custom.yaml"))
    assert [p.name for p in load_site(site, environ={}).devices[0].points] == ["p_kw", "i_a"]


def test_a_point_longer_than_max_registers_is_an_error_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = _site(tmp_path, HEAD + DEVICE + "    max_registers: 1\n")
    assert main(["check", str(site)]) == 2
    err = capsys.readouterr().err
    assert f"{site}:17: devices[0].points[0]: p_kw spans 2 registers, more than one read takes (max_registers 1)" in err


def test_an_inline_point_on_a_profile_hole_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "custom.yaml").write_text(PROFILE + "holes:\n  - {register: input, address: 20, count: 2}\n")
    device = DEVICE.replace("device_class: meter", "profile: custom.yaml").replace(POINT, "")
    site = _site(tmp_path, HEAD + device + "      - {name: e_kwh, register: input, address: 21, type: uint16}\n")
    assert _problems(site) == [f"{site}:17: devices[0].points[0]: e_kwh lies on a hole of the profile"]
