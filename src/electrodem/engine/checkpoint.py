"""Checkpoints: the full state of a `Simulation` in one ``.npz`` (model as JSON, arrays as float64).

Holds particles (positions, velocities, spins, forces and torques of the last step so the next half
kick is exact, the recorded wall forces of `Simulation(record_wall_forces=True)`), per-pair and
per-wall contact history (with the largest overlaps of the Thornton–Ning
law and the JKR contact flags), the temperature, wall positions/velocities/forces/work, step, time, time
step, the model description and the per-particle agent fields (`electrodem.engine.fields`; their
names, dtypes and fills are in the model description, their arrays under ``fld_<name>``), so
`read_checkpoint` continues the run where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from electrodem.engine.model import ContactModel, Material, PairOverride
from electrodem.engine.state import D_LE_SHIFT
from electrodem.engine.walls import Wall

FORMAT = 1


def capture(sim: Any) -> dict[str, Any]:
    """In-memory copy of everything a checkpoint holds."""
    st = sim._store.particles_to_numpy(sim.n)
    st["wbond"] = sim._wall_bonds()
    glob = sim._store.globals_to_numpy()
    hist = (
        sim._nl.history_numpy()
        if sim._list_valid
        else {
            "i": np.zeros(0, np.int64),
            "j": np.zeros(0, np.int64),
            "ht": np.zeros((0, 3)),
            "hr": np.zeros((0, 3)),
            "dm": np.zeros(0),
            "hc": np.zeros(0, np.int32),
        }
    )
    desc = sim.describe()
    return {
        "model": desc,
        "step": sim.step,
        "time_s": sim.time_s,
        "dt_s": sim.dt_s,
        "forces_valid": sim._forces_valid,
        "ids": sim.ids.copy(),
        "next_id": sim._next_id,
        "particles": st,
        "walls": glob["walls"].astype(np.float64),
        "wforce": glob["wforce"].astype(np.float64),
        "wwork": sim._store.wwork.to_numpy().astype(np.float64),
        "le_shift_m": float(glob["dom"][D_LE_SHIFT]),
        "hist": hist,
        "extensions": {e.name: e.state_dict() for e in sim.extensions},
        "fields": sim.fields.copy_arrays(),
    }


def write_checkpoint(data: dict[str, Any], path: Path) -> Path:
    """Write a captured state to ``path`` (suffix .npz added if missing); returns the path."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    arrays: dict[str, Any] = {
        "format": np.array(FORMAT),
        "model_json": np.array(json.dumps(data["model"])),
        "step": np.array(data["step"]),
        "time_s": np.array(data["time_s"]),
        "dt_s": np.array(data["dt_s"]),
        "forces_valid": np.array(bool(data["forces_valid"])),
        "ids": data["ids"],
        "next_id": np.array(data["next_id"]),
        "walls": data["walls"],
        "wforce": data["wforce"],
        "wwork": data["wwork"],
        "le_shift_m": np.array(data.get("le_shift_m", 0.0)),
    }
    for k, v in data["particles"].items():
        arrays[f"p_{k}"] = v
    for k, v in data["hist"].items():
        arrays[f"h_{k}"] = v
    for name, state in data.get("extensions", {}).items():
        for k, v in state.items():
            arrays[f"x_{name}__{k}"] = np.asarray(v)
    for name, a in data.get("fields", {}).items():
        arrays[f"fld_{name}"] = a
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def read_checkpoint(cls: Any, path: Path, options: Any = None) -> Any:
    """Build a `Simulation` (class ``cls``) from a checkpoint file."""
    from electrodem.engine.simulation import Guards

    with np.load(path, allow_pickle=False) as z:
        if int(z["format"]) > FORMAT:
            raise ValueError(f"{path}: checkpoint format {int(z['format'])} is newer than this code reads")
        m = json.loads(str(z["model_json"]))
        data = {k: z[k] for k in z.files}
    walls = [
        Wall(
            **{
                **w,
                "point_m": tuple(w["point_m"]),
                "normal": tuple(w["normal"]),
                "velocity_m_per_s": tuple(w["velocity_m_per_s"]),
            }
        )
        for w in m["walls"]
    ]
    sim = cls(
        materials=[Material(**d) for d in m["materials"]],
        box_m=m["box_m"],
        periodic=m["periodic"],
        contact=ContactModel(**m["contact"]),
        walls=walls,
        gravity_m_per_s2=m["gravity_m_per_s2"],
        dt_s=m["dt_fixed_s"],
        rayleigh_fraction=m["rayleigh_fraction"],
        steps_per_contact=m["steps_per_contact"],
        impact_speed_m_per_s=m["impact_speed_m_per_s"],
        skin_m=m["skin_m"],
        background_damping_per_s=m["background_damping_per_s"],
        pair_overrides={(a, b): PairOverride(**o) for a, b, o in m["pair_overrides"]},
        guards=Guards(**m["guards"]),
        options=options,
        temperature_K=m.get("temperature_K", 293.15),
        shear_rate_per_s=m.get("shear_rate_per_s", 0.0),
        record_wall_forces=m.get("record_wall_forces", False),
    )
    sim.scalings.update(m["scalings"])
    p = {k[2:]: data[k] for k in data if k.startswith("p_")}
    st = sim._store
    sim.add_particles(
        p["x"],
        p["r"],
        p["mat"],
        velocities_m_per_s=p["v"],
        angular_velocities_rad_per_s=p["w"],
        masses_kg=np.where(p["invm"] > 0, 1.0 / np.where(p["invm"] > 0, p["invm"], 1.0), 1.0),
        fixed=p["invm"] == 0,
        ids=data["ids"],
    )
    st = sim._store
    st.particles_from_numpy(p)
    if "wbond" in p:
        sim._set_wall_bonds(p["wbond"])
    np_real = sim.np_real
    st.walls.from_numpy(data["walls"].astype(np_real))
    st.wforce.from_numpy(data["wforce"].astype(np_real))
    if "wwork" in data:  # older checkpoints: the wall work restarts from zero
        st.wwork.from_numpy(data["wwork"].astype(np_real))
    from electrodem.engine.extensions import restore

    for e in m.get("extensions", []):
        ext = restore(e["class"], e["params"])
        sim.add_extension(ext)
        pre = f"x_{e['name']}__"
        ext.load_state_dict({k[len(pre) :]: data[k] for k in data if k.startswith(pre)})
    fields = m.get("fields", [])
    sim.fields.load(fields, {f["name"]: data[f"fld_{f['name']}"] for f in fields})
    sim._next_id = int(data["next_id"])
    sim.step = int(data["step"])
    sim.time_s = float(data["time_s"])
    if m["time_step"] is not None:
        from electrodem.engine.simulation import TimeStep

        sim.time_step_report = TimeStep(**m["time_step"])
    sim.dt_s = float(data["dt_s"])
    sim._set_dom(10, sim.dt_s)
    if "le_shift_m" in data:
        # Exact value (the model JSON holds it too, but rounded through a float print).
        sim._set_dom(D_LE_SHIFT, float(data["le_shift_m"]))
    hist = {k[2:]: data[k] for k in data if k.startswith("h_")}
    sim._nl.load_history(hist, sim.n)
    sim._rebuild()
    sim._forces_valid = bool(data["forces_valid"])
    return sim
