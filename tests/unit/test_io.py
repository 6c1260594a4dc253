"""Snapshot npz and VTU/PVD round trips."""

from __future__ import annotations

import numpy as np
import pytest

from electrodem.io.snapshot import ContactSet, Microstructure, Species
from electrodem.io.vtk import PVDSeries, read_pvd, read_vtu, write_vtu


def _micro(n: int = 50) -> Microstructure:
    rng = np.random.default_rng(0)
    sp = (Species("a", "AM", 4750.0, 2e11, 0.25, 1e-3, 0.0, 200.0, "#3b5ba5"),
          Species("b", "CB", 1900.0, 1e9, 0.3, 1e3))
    k = n // 2
    return Microstructure(
        positions_m=rng.uniform(0, 1e-5, (n, 3)), radii_m=rng.uniform(1e-7, 1e-6, n),
        species_id=np.r_[np.zeros(k), np.ones(n - k)], species=sp, box_m=[1e-5, 1e-5, 2e-5],
        velocities_m_per_s=rng.normal(size=(n, 3)),
        contacts=ContactSet(np.array([0, 1]), np.array([2, 3]), np.array([1e-9, 2e-9]),
                            np.array([1e-8, 2e-8]), np.array([1e-3, 2e-3])),
        bonds={"i": np.array([0]), "j": np.array([1]), "broken": np.array([False])},
        fields={"binder_volume_m3": np.arange(n, dtype=float)},
        metadata={"stage": "test", "nested": {"x": np.float64(1.5)}}, time_s=0.25)


def test_snapshot_round_trip(tmp_path):
    m = _micro()
    p = m.save(tmp_path / "s.npz")
    r = Microstructure.load(p)
    for a in ("positions_m", "radii_m", "species_id", "box_m", "ids", "velocities_m_per_s"):
        np.testing.assert_array_equal(getattr(m, a), getattr(r, a))
    assert r.species == m.species and r.periodic == m.periodic and r.time_s == 0.25
    np.testing.assert_array_equal(r.contacts.normal_force_N, m.contacts.normal_force_N)
    np.testing.assert_array_equal(r.bonds["broken"], [False])
    np.testing.assert_array_equal(r.fields["binder_volume_m3"], m.fields["binder_volume_m3"])
    assert r.metadata == {"stage": "test", "nested": {"x": 1.5}}
    with pytest.raises(FileExistsError):
        m.save(p)  # nothing is silently overwritten


def test_snapshot_derived_quantities():
    m = _micro()
    assert m.masses_kg.sum() == pytest.approx(np.sum(m.volumes_m3 * m.densities_kg_per_m3))
    assert m.role_mask("CB").sum() == 25
    assert m.top_m() == pytest.approx(np.max(m.positions_m[:, 2] + m.radii_m))
    assert m.with_(metadata={"top_z_m": 1e-5}).top_m() == 1e-5
    with pytest.raises(ValueError, match="species_id"):
        Microstructure(np.zeros((1, 3)), [1.0], [5], m.species, [1, 1, 1])


def test_vtu_round_trip_through_meshio(tmp_path):
    m = _micro()
    p = write_vtu(m, tmp_path / "p.vtu")
    mesh = read_vtu(p)
    n = m.n  # the particles come first (a bond across a periodic face may add its image point after)
    np.testing.assert_allclose(mesh.points[:n], m.positions_m)
    np.testing.assert_allclose(mesh.point_data["radius"][:n], m.radii_m)
    np.testing.assert_array_equal(mesh.point_data["species"][:n], m.species_id)
    np.testing.assert_array_equal(mesh.point_data["id"][:n], m.ids)
    np.testing.assert_allclose(mesh.point_data["velocity"][:n], m.velocities_m_per_s)
    np.testing.assert_allclose(mesh.point_data["binder_volume_m3"][:n], m.fields["binder_volume_m3"])


def test_bonds_are_line_cells_drawn_to_the_minimum_image(tmp_path):
    """Bonds become VTK lines between the particles they join, with their state as cell data; a bond
    across the periodic x face ends at the partner's image (an extra point without a glyph), so its
    drawn length is the bond's minimum-image length, not a line across the whole box."""
    m = _micro(4)
    x = np.array([[1e-6, 5e-6, 5e-6], [2e-6, 5e-6, 5e-6], [9.5e-6, 5e-6, 5e-6], [3e-6, 6e-6, 5e-6]])
    m = m.with_(positions_m=x, contacts=None,
                bonds={"i": np.array([0, 0]), "j": np.array([1, 2]), "radius_m": np.array([1e-7, 2e-7]),
                       "broken": np.array([False, True])})
    mesh = read_vtu(write_vtu(m, tmp_path / "b.vtu"))
    assert len(mesh.points) == 5  # 4 particles + the image of particle 2 across x = 0
    lines = mesh.cells_dict["line"]
    seg = mesh.points[lines[:, 1]] - mesh.points[lines[:, 0]]
    np.testing.assert_allclose(np.linalg.norm(seg, axis=1), [1e-6, 1.5e-6], rtol=1e-12)
    np.testing.assert_allclose(mesh.points[4], [-0.5e-6, 5e-6, 5e-6], rtol=1e-12)
    assert mesh.point_data["id"][4] == -1 and mesh.point_data["diameter"][4] == 0.0
    kinds = dict(zip([c.type for c in mesh.cells], mesh.cell_data["cell_kind"], strict=True))
    assert (kinds["vertex"] == 0).all() and (kinds["line"] == 1).all()
    by_type = dict(zip([c.type for c in mesh.cells], mesh.cell_data["bond_radius_m"], strict=True))
    np.testing.assert_array_equal(by_type["line"], [1e-7, 2e-7])
    assert np.isnan(by_type["vertex"]).all()


def test_pvd_series(tmp_path):
    m = _micro()
    s = PVDSeries(tmp_path / "particles.pvd")
    for k, t in enumerate([0.0, 0.5]):
        s.add(t, write_vtu(m, tmp_path / "particles" / f"{k:02d}.vtu"))
    entries = read_pvd(tmp_path / "particles.pvd")
    assert [e[0] for e in entries] == [0.0, 0.5]
    assert all(e[1].is_file() for e in entries)


def test_a_snapshot_write_cut_short_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    """A write that fails half-way (full disk) keeps the old file byte for byte and leaves no temporary:
    a run's checkpoint.npz always holds a complete stage."""
    import errno

    path = tmp_path / "checkpoint.npz"
    micro = Microstructure(np.array([[1e-6, 1e-6, 1e-6]]), np.array([5e-7]), np.array([0]),
                           (Species("a", "AM", 4750.0, 2e11, 0.25, 1e-3),), np.array([4e-6, 4e-6, 4e-6]))
    micro.save(path)
    before = path.read_bytes()

    def cut_short(file, *args, **kwargs):
        with open(file, "wb") as f:
            f.write(b"PK\x03\x04")
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    monkeypatch.setattr(np, "savez_compressed", cut_short)
    with pytest.raises(OSError, match="No space left"):
        micro.with_(positions_m=np.array([[2e-6, 1e-6, 1e-6]])).save(path, overwrite=True)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]
