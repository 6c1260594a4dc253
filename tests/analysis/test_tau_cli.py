"""The ``electrodem-tau`` command: .npy and .tif input, JSON and table output, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from electrodem.analysis.tau_cli import main


@pytest.fixture
def channel_image() -> np.ndarray:
    """Labels: 1 = a straight channel along x, 2 = a dead-end stub, 0 = the rest."""
    labels = np.zeros((12, 8, 8), dtype=np.uint8)
    labels[:, 2:5, 2:5] = 1
    labels[:6, 6, 6] = 2
    return labels


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_npy_json_output(
    tmp_path: Path, channel_image: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "img.npy"
    np.save(path, channel_image)
    code, out, _ = _run(capsys, str(path), "--phase", "1", "--axis", "x", "--json")
    assert code == 0
    res = json.loads(out)["results"]["x"]
    eps = 9 / 64
    assert res["volume_fraction"] == pytest.approx(eps)
    assert res["tortuosity_factor"] == pytest.approx(1.0, abs=1e-4)
    assert res["relative_conductivity"] == pytest.approx(eps, rel=1e-4)
    assert res["macmullin_number"] == pytest.approx(1 / eps, rel=1e-4)
    assert res["converged"] is True


def test_tif_stack_all_axes_with_dead_end(
    tmp_path: Path, channel_image: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, channel_image)
    code, out, _ = _run(capsys, str(path), "--phase", "2", "--axis", "all", "--json")
    assert code == 0
    results = json.loads(out)["results"]  # strict JSON parses: infinities are strings
    assert set(results) == {"x", "y", "z"}
    assert results["x"]["tortuosity_factor"] == "inf"
    assert results["x"]["sigma_eff_S_per_m"] == 0.0


def test_table_output_and_conductivity_map(
    tmp_path: Path, channel_image: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "img.npy"
    labels = channel_image.copy()
    labels[labels == 0] = 3
    np.save(path, labels)
    code, out, _ = _run(
        capsys, str(path), "--conductivity", "1=2.0", "--conductivity", "3=2.0", "--axis", "y"
    )
    assert code == 0
    assert "tortuosity factor tau" in out and "MacMullin" in out
    # Labels 1 and 3 (2 S/m) fill all but the 6-voxel insulating stub, which blocks 6 of the 96
    # rows along y: monotonicity bounds sigma_eff between those rows removed and the Wiener mean.
    row = next(line for line in out.splitlines() if line.startswith("sigma_eff (S/m)"))
    assert 2.0 * 90 / 96 < float(row.split()[-1]) < 2.0 * (1 - 6 / labels.size)


def test_boolean_mask_defaults_to_true_phase(
    tmp_path: Path, channel_image: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mask.npy"
    np.save(path, channel_image == 1)
    code, out, _ = _run(capsys, str(path), "--axis", "x", "--json")
    assert code == 0 and json.loads(out)["results"]["x"]["tortuosity_factor"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("setup", "argv", "message"),
    [
        ("none", ["missing.npy", "--phase", "1"], "no such file"),
        ("txt", ["img.txt", "--phase", "1"], "unknown extension"),
        ("npy", ["img.npy", "--phase", "7"], "do not occur"),
        ("npy", ["img.npy"], "--phase"),
        ("npy", ["img.npy", "--phase", "a"], "--phase"),
        ("npy", ["img.npy", "--conductivity", "1:2"], "--conductivity"),
        ("npy", ["img.npy", "--phase", "1", "--flux-rtol", "0"], "flux_rtol"),
        ("4d", ["img.npy", "--phase", "1"], "2D or 3D"),
        ("bad", ["img.npy", "--phase", "1"], "could not be read"),
    ],
)
def test_errors_are_clear(
    tmp_path: Path,
    channel_image: np.ndarray,
    capsys: pytest.CaptureFixture[str],
    setup: str,
    argv: list[str],
    message: str,
) -> None:
    if setup == "npy":
        np.save(tmp_path / "img.npy", channel_image)
    elif setup == "txt":
        (tmp_path / "img.txt").write_text("1 2 3")
    elif setup == "4d":
        np.save(tmp_path / "img.npy", np.zeros((2, 2, 2, 2), np.uint8))
    elif setup == "bad":
        (tmp_path / "img.npy").write_bytes(b"not a numpy file")
    code, out, err = _run(capsys, str(tmp_path / argv[0]), *argv[1:])
    assert code == 2 and out == ""
    assert message in err and err.startswith("electrodem-tau: error:")


def test_bad_axis_is_an_argparse_error(
    tmp_path: Path, channel_image: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "img.npy", channel_image)
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "img.npy"), "--phase", "1", "--axis", "w"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
