"""Mechanical and adhesive material data: every library material carries surface energy, contact yield
pressure and softening temperatures with a source; they reach the `Species` (SI), survive a snapshot
round trip (old snapshots without them still load), and arrive in the engine's pair table through the
process layer (W = 2 sqrt(gamma_a gamma_b), p_y = the smaller yield pressure); bad values are refused
with the key named."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from electrodem.config.errors import ConfigError
from electrodem.io.snapshot import Microstructure, Species
from electrodem.materials.collector import COLLECTORS
from electrodem.materials.library import Material

NEW_KEYS = ("surface_energy_J_m2", "contact_yield_pressure_MPa", "softening_onset_K", "melting_K")
POLYMERS = ("pvdf", "ptfe")


def test_every_material_has_the_mechanical_keys_with_sources(config_dir, library):
    import yaml

    for p in sorted((config_dir / "material").glob("*.yaml")):
        raw = yaml.safe_load(p.read_text())
        for key in NEW_KEYS:
            assert key in raw, f"{p.stem}: no {key}"
            assert key in raw["sources"] and len(raw["sources"][key]) > 10, f"{p.stem}: no source for {key}"
        m = library[p.stem]
        assert m.surface_energy_J_m2 > 0 and m.contact_yield_pressure_MPa > 0
        # Surface energies of solids lie between PTFE-like (~0.02) and clean oxides (~1 J/m^2).
        assert 1e-3 <= m.surface_energy_J_m2 <= 1.0
    # Polymer binders soften toward their melt (PVDF ~443-450 K, PTFE ~600 K); ceramics do not here.
    assert library["pvdf"].melting_K == pytest.approx(443.0, abs=10)
    assert library["ptfe"].melting_K == pytest.approx(600.0, abs=5)
    for name in POLYMERS:
        assert library[name].softening_onset_K < library[name].melting_K
    for name in ("nmc811", "llzo", "carbon_black_c65"):
        assert library[name].melting_K is None and library[name].softening_onset_K is None
    # Hardness ordering the data must respect: hard oxide SE > soft sulfide SE > NMC secondary
    # particle crush > polymer binders > porous CB agglomerate.
    py = {k: v.contact_yield_pressure_MPa for k, v in library.items()}
    assert py["llzo"] > py["li6ps5cl"] > py["nmc811"] > py["pvdf"] > py["ptfe"] > py["carbon_black_c65"]
    for foil in COLLECTORS.values():
        for key in ("youngs_modulus_Pa", "surface_energy_J_per_m2", "poisson_ratio"):
            assert key in foil.sources


def test_species_gets_si_values_and_round_trips(library, tmp_path):
    pvdf = library["pvdf"].to_species()
    assert pvdf.surface_energy_J_per_m2 == library["pvdf"].surface_energy_J_m2
    assert pvdf.yield_pressure_Pa == pytest.approx(library["pvdf"].contact_yield_pressure_MPa * 1e6)
    assert (pvdf.softening_onset_K, pvdf.melting_K) == (library["pvdf"].softening_onset_K, 443.0)
    sp = (library["nmc811"].to_species(), pvdf)
    micro = Microstructure(
        np.array([[1e-6, 1e-6, 1e-6], [3e-6, 1e-6, 1e-6]]),
        [1e-6, 5e-7],
        [0, 1],
        sp,
        np.array([1e-5, 1e-5, 1e-5]),
    )
    back = Microstructure.load(micro.save(tmp_path / "m.npz"))
    assert back.species == sp


def test_old_snapshot_without_mechanics_loads_with_defaults(tmp_path):
    micro = Microstructure(
        np.zeros((1, 3)) + 1e-6,
        [1e-6],
        [0],
        (Species("a", "AM", 4750.0, 2e11, 0.25),),
        np.array([1e-5, 1e-5, 1e-5]),
    )
    path = micro.save(tmp_path / "old.npz")
    # Rewrite the species table as the format before the mechanical fields had it.
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    old = [
        {
            k: v
            for k, v in d.items()
            if k not in ("surface_energy_J_per_m2", "yield_pressure_Pa", "softening_onset_K", "melting_K")
        }
        for d in json.loads(str(arrays["species_json"]))
    ]
    assert "yield_pressure_Pa" not in old[0]
    arrays["species_json"] = np.array(json.dumps(old))
    np.savez_compressed(path, **arrays)
    s = Microstructure.load(path).species[0]
    assert (s.surface_energy_J_per_m2, s.yield_pressure_Pa, s.softening_onset_K, s.melting_K) == (
        0.0,
        0.0,
        None,
        None,
    )


def test_pair_values_reach_the_engine_table(library):
    from electrodem.engine.model import P_PY, P_W, ContactModel, MaterialTable
    from electrodem.process.engine_map import ContactParams, ShortcutParams, engine_materials

    names = ("nmc811", "carbon_black_c65", "pvdf")
    sp = tuple(library[n].to_species() for n in names)
    micro = Microstructure(
        np.array([[5e-6, 5e-6, 5e-6], [12e-6, 5e-6, 1e-6], [15e-6, 5e-6, 1e-6]]),
        [5e-6, 4e-7, 5e-7],
        [0, 1, 2],
        sp,
        np.array([3e-5, 3e-5, 3e-5]),
    )
    contact, shortcuts = ContactParams(cohesion="jkr", surface_energy_scale=0.5), ShortcutParams()
    mats = engine_materials(micro, contact, shortcuts, tools=("plate",))
    assert [m.name for m in mats] == [*names, "current_collector", "plate"]
    # Tools are tool steel, softened like everything else; their surface is release-coated (W = 0).
    assert mats[-1].youngs_modulus_Pa == pytest.approx(min(210e9, shortcuts.modulus_cap_Pa))
    assert mats[-1].surface_energy_J_per_m2 == 0.0
    mats = mats[:-1]
    table = MaterialTable(tuple(mats)).pair_table(ContactModel(normal="thornton_ning", cohesion="jkr"))
    g = [library[n].surface_energy_J_m2 for n in names] + [COLLECTORS["aluminium"].surface_energy_J_per_m2]
    for a in range(4):
        for b in range(4):
            # Work of adhesion W_ab = 2 sqrt(gamma_a gamma_b) (Dupre / Girifalco-Good), times the shortcut.
            assert table[a, b, P_W] == pytest.approx(0.5 * 2.0 * math.sqrt(g[a] * g[b]), rel=1e-12)
    # p_y: the softer member limits the contact pressure; the collector is elastic.
    assert table[0, 1, P_PY] == pytest.approx(library["carbon_black_c65"].contact_yield_pressure_MPa * 1e6)
    assert table[0, 2, P_PY] == pytest.approx(library["pvdf"].contact_yield_pressure_MPa * 1e6)
    assert table[0, 3, P_PY] == pytest.approx(library["nmc811"].contact_yield_pressure_MPa * 1e6)
    # PVDF softening reaches the engine: at its melting point 2 % of the yield pressure is left.
    hot = MaterialTable(tuple(mats)).pair_table(ContactModel(normal="thornton_ning"), temperature_K=443.0)
    assert hot[2, 2, P_PY] == pytest.approx(0.02 * library["pvdf"].contact_yield_pressure_MPa * 1e6)
    # The collector is aluminium foil under an NMC cathode (modulus softened like the particles).
    assert mats[-1].surface_energy_J_per_m2 == pytest.approx(
        0.5 * 2 * COLLECTORS["aluminium"].surface_energy_J_per_m2
    )
    assert mats[-1].youngs_modulus_Pa == pytest.approx(min(70e9, shortcuts.modulus_cap_Pa))
    # Overrides win over the library; a species the microstructure lacks is refused by name.
    over = ContactParams(yield_pressure_MPa={"pvdf": 7.0}, softening_K={"pvdf": [300.0, 400.0]})
    pv = engine_materials(micro, over, shortcuts)[2]
    assert (pv.yield_pressure_Pa, pv.softening_onset_K, pv.melting_K) == (7.0e6, 300.0, 400.0)
    off = engine_materials(micro, ContactParams(yield_pressure_from_library=False), shortcuts)
    assert all(m.yield_pressure_Pa is None for m in off)
    with pytest.raises(ConfigError, match="contact.yield_pressure_MPa.graphite"):
        engine_materials(micro, ContactParams(yield_pressure_MPa={"graphite": 1.0}), shortcuts)


@pytest.mark.parametrize(
    "key, value",
    [
        ("surface_energy_J_m2", -0.1),
        ("surface_energy_J_m2", "sticky"),
        ("contact_yield_pressure_MPa", -5.0),
        ("contact_yield_pressure_MPa", math.inf),
        ("melting_K", -3.0),
        ("softening_onset_K", 500.0),  # above the melting point
        ("melting_K", None),  # onset without melting point
    ],
)
def test_bad_mechanical_values_are_refused_naming_the_key(library, key, value):
    cfg = {**_raw(library["pvdf"]), key: value}
    with pytest.raises(ConfigError) as e:
        Material.from_config("pvdf", cfg)
    assert key in str(e.value) or "softening_onset_K/melting_K" in str(e.value)
    assert "material.pvdf" in str(e.value)


def test_contact_params_refuse_bad_values_naming_the_key():
    from electrodem.process.engine_map import ContactParams, ShortcutParams

    with pytest.raises(ConfigError, match="contact.cohesion"):
        ContactParams(cohesion="glue")
    with pytest.raises(ConfigError, match="settle.contact.surface_energy_scale"):
        ContactParams(surface_energy_scale=-1.0, where="settle.contact")
    with pytest.raises(ConfigError, match="contact.current_collector"):
        ContactParams(current_collector="gold")
    with pytest.raises(ConfigError, match="shortcuts.fines_weight"):
        ShortcutParams(fines_weight="heavy")


def _raw(m: Material) -> dict:
    """The config mapping of a library material (the PSD re-expressed as its config)."""
    return {
        "role": m.role,
        "density_g_cm3": m.density_g_cm3,
        "youngs_modulus_GPa": m.youngs_modulus_GPa,
        "poisson_ratio": m.poisson_ratio,
        "psd": {"d50_um": 1.0, "geometric_std": 1.3, "d_min_um": 0.5, "d_max_um": 2.0},
        "surface_energy_J_m2": m.surface_energy_J_m2,
        "contact_yield_pressure_MPa": m.contact_yield_pressure_MPa,
        "softening_onset_K": m.softening_onset_K,
        "melting_K": m.melting_K,
    }
