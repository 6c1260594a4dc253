"""A live `Simulation` across phases: reconfiguration between runs and in-memory snapshots.

`Simulation` delegates its live-change methods here (``set_materials``, ``set_contact``, the wall list,
particle removal and property changes, ``snapshot_state`` / ``restore_state``); see docs/engine.md,
"A live simulation across phases".

Two ways of putting state back into storage:

* the host image (`HostImage`): particles in external order with their wall histories, the JKR
  wall-contact bits, and the pair history in external indices, exactly what `add_particles` already
  carries across a store reallocation. `load_image` installs it into storage built for the CURRENT
  configuration (contact sub-models, wall and material counts): fields both configurations have are
  copied bit for bit, a history only the new one has starts at zero, one it lacks is dropped. The
  internal order becomes the external one and the neighbour list is rebuilt (history carried) before
  the next force evaluation, so the trajectory goes on with the same state but another summation order.
* the raw snapshot (`LiveState`): every array the kernels read, in INTERNAL order, with the neighbour
  list itself (pairs, ownership, order, R* and m*, reverse list), the positions at the last build and
  every Python-side counter. Putting that back makes the next steps bit for bit those the simulation
  took from the snapshot the first time (`restore_state`), as long as the kernels are deterministic:
  the contact path is (see tests/engine/test_thread_invariance.py); bonds sum their forces with float
  atomics and are reproducible only to round-off on several threads.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from electrodem.config import ConfigError
from electrodem.engine.extensions import Extension, kept_index_map
from electrodem.engine.model import ContactModel, Material, MaterialTable, PairOverride
from electrodem.engine.walls import MAX_WALLS, W_PX, Wall

if TYPE_CHECKING:
    from electrodem.engine.simulation import Guards, Simulation


def needs(contact: ContactModel) -> tuple[bool, bool, bool]:
    """(rolling history, largest overlap dm, JKR flag) the contact model keeps per pair / wall."""
    return contact.rolling == "epsd", contact.normal == "thornton_ning", contact.cohesion == "jkr"


# ---------------------------------------------------------------------- host image
@dataclass
class HostImage:
    """Particles (external order, `ParticleStore.particles_to_numpy` keys), their JKR wall-contact bits
    (int32, see `Simulation._wall_bonds`) and the pair history (`NeighborList.history_numpy`, external
    indices)."""

    particles: dict[str, np.ndarray]
    wall_bonds: np.ndarray
    hist: dict[str, np.ndarray]


def host_image(sim: Simulation) -> HostImage:
    """The current state as a `HostImage` (host copies)."""
    return HostImage(sim._store.particles_to_numpy(sim.n), sim._wall_bonds(), sim._nl.history_numpy())


def _drop_missing_histories(img: HostImage, contact: ContactModel) -> None:
    """Zero the histories ``contact`` does not keep. The storage of a model without a rolling spring,
    dm or JKR flag has no room for them anyway; the tangential spring always has room, and a kernel
    compiled without the tangential model neither uses nor clears it, so a stale spring would come back
    with a later switch to ``mindlin``."""
    rolling, plastic, cohesion = needs(contact)
    p, h = img.particles, img.hist
    if contact.tangential == "none":
        p["wht"] = np.zeros_like(p["wht"])
        h["ht"] = np.zeros_like(h["ht"])
    if not rolling:
        p["whr"] = np.zeros_like(p["whr"])
        h["hr"] = np.zeros_like(h["hr"])
    if not plastic:
        p["wdm"] = np.zeros_like(p["wdm"])
        h["dm"] = np.zeros_like(h["dm"])
    if not cohesion:
        h["hc"] = np.zeros_like(h["hc"])
        img.wall_bonds = np.zeros_like(img.wall_bonds)


def _storage_fits(sim: Simulation, n: int) -> bool:
    """Whether the particle store can hold ``n`` particles of the current configuration as it is."""
    s = sim._store
    rolling, plastic, _ = needs(sim.contact)
    return (
        n <= s.cap
        and s.rolling == rolling
        and s.plastic == plastic
        and len(sim.walls) <= s.n_wall_slots
        and len(sim.materials.materials) <= s.table.shape[0]
    )


def _fit_neighbor_list(sim: Simulation) -> None:
    """Replace the neighbour list by one with the per-pair fields of the current contact model."""
    from electrodem.engine.neighbors import NeighborList

    flags = needs(sim.contact)
    nl = sim._nl
    if (nl.rolling, nl.plastic, nl.cohesion) != flags:
        builds = nl.builds
        nl.destroy()
        sim._nl = NeighborList(sim.real, rolling=flags[0], plastic=flags[1], cohesion=flags[2])
        sim._nl.builds = builds


def load_image(sim: Simulation, img: HostImage) -> None:
    """Install ``img`` as the particles and contact history of ``sim``'s current configuration (see the
    module docstring). Checks the box against the new skin first, so a ConfigError leaves the storage
    untouched."""
    n = len(img.particles["r"])
    reach, skin = sim._skin_for(img.particles["r"])
    _drop_missing_histories(img, sim.contact)
    if not _storage_fits(sim, n):
        sim._alloc_store(max(n, sim._store.cap))
    _fit_neighbor_list(sim)
    sim._store.particles_from_numpy(img.particles)
    sim._set_wall_bonds(img.wall_bonds)
    sim._nl.load_history(img.hist, n)
    sim.n = n
    sim.cohesion_reach_m = reach
    if n:
        sim._nl.assign_levels(sim._store, img.particles["r"], skin)
    sim._invalidate(list_=True)


def _changed(sim: Simulation) -> None:
    for e in sim.extensions:
        e.on_model_changed(sim)


# ---------------------------------------------------------------------- materials and contact
def set_materials(
    sim: Simulation,
    materials: Sequence[Material],
    pair_overrides: Mapping[tuple[str, str], PairOverride] | None,
    rescale_masses: bool,
) -> None:
    """See `Simulation.set_materials`."""
    table = MaterialTable(tuple(materials), dict(pair_overrides or {}))
    old = sim.materials
    names = {m.name for m in table.materials}
    n = sim.n
    s = sim._store
    mat = s.mat.to_numpy()
    used = [old.materials[k].name for k in np.unique(mat[:n])]
    used += [w.material for w in sim.walls]
    used += [e.material for e in sim.extensions if isinstance(getattr(e, "material", None), str)]
    for nm in used:
        if nm not in names:
            raise ConfigError(
                "materials", nm, f"a table that still has material {nm!r} (in use); got {sorted(names)}"
            )
    remap = np.array([table.index(m.name) if m.name in names else -1 for m in old.materials], np.int32)
    sim.materials = table
    try:
        sim._skin_for(sim._radii())  # the JKR reach depends on the moduli and W
    except ConfigError:
        sim.materials = old
        raise
    if not _storage_fits(sim, n):
        img = host_image(sim)
        img.particles["mat"] = remap[img.particles["mat"]]
        load_image(sim, img)  # re-acquires a store with room for the pair table
        s = sim._store
    else:
        mat[:n] = remap[mat[:n]]
        s.mat.from_numpy(mat)
    if rescale_masses and n:
        r = s.r.to_numpy()
        invm, inv_i = s.invm.to_numpy(), s.invI.to_numpy()
        rho = np.array([m.density_kg_per_m3 for m in table.materials])[s.mat.to_numpy()[:n]]
        # The expressions of add_particles: a rescaled mass is bit for bit what a new particle gets.
        mass = 4.0 / 3.0 * np.pi * r[:n].astype(np.float64) ** 3 * rho
        mobile = invm[:n] > 0
        invm[:n][mobile] = (1.0 / mass)[mobile]
        inv_i[:n][mobile] = (1.0 / (0.4 * mass * r[:n] ** 2))[mobile]
        gm = s.gm.to_numpy()
        gm[:n][mobile] = mass[mobile]
        s.invm.from_numpy(invm)
        s.invI.from_numpy(inv_i)
        s.gm.from_numpy(gm)
    wmat = np.zeros(MAX_WALLS, np.int32)
    wmat[: len(sim.walls)] = [table.index(w.material) for w in sim.walls]
    s.wmat.from_numpy(wmat)
    sim._upload_table()
    reach, skin = sim._skin_for(sim._radii())
    sim.cohesion_reach_m = reach
    if n:
        sim._nl.assign_levels(s, s.r.to_numpy()[:n].astype(np.float64), skin)
    # m* of the listed pairs changes with the masses; a rebuild recomputes it (history carried).
    sim._invalidate(list_=True)
    _changed(sim)


def set_contact(sim: Simulation, contact: ContactModel) -> None:
    """See `Simulation.set_contact`."""
    if not isinstance(contact, ContactModel):
        raise ConfigError("contact", type(contact).__name__, "an electrodem.engine.ContactModel")
    img = host_image(sim)  # before the switch: the JKR wall bits are read for the old model
    old = sim.contact
    sim.contact = contact
    try:
        load_image(sim, img)
    except ConfigError:
        sim.contact = old
        raise
    sim._upload_table()
    _changed(sim)


# ---------------------------------------------------------------------- walls
def wall_index(sim: Simulation, key: str | int) -> int:
    """Index of the wall called ``key`` (the first of that name), or ``key`` itself if an index."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if not 0 <= key < len(sim.walls):
            raise ConfigError("wall", key, f"a wall index in [0, {len(sim.walls)})")
        return int(key)
    for k, w in enumerate(sim.walls):
        if w.name == key:
            return k
    raise ConfigError("wall", key, f"a wall name among {[w.name for w in sim.walls]} or an index")


def apply_walls(
    sim: Simulation, walls: Sequence[Wall], source: Sequence[int | None], keep_rows: bool
) -> None:
    """Replace the wall list: new wall k takes the per-particle history (tangential, rolling, dm,
    recorded force, JKR bit), force and work of old wall ``source[k]`` (None: fresh). ``keep_rows``:
    such a wall also keeps its current kernel row (moved position, servo speed) instead of the row of
    its `Wall`."""
    from electrodem.engine.integrate import WALL_BOND_BIT

    walls = list(walls)
    if len(walls) > MAX_WALLS:
        raise ConfigError("walls", len(walls), f"at most {MAX_WALLS} walls")
    for w in walls:
        if not isinstance(w, Wall):
            raise ConfigError("walls", type(w).__name__, "electrodem.engine.Wall objects")
        sim.materials.index(w.material)
    img = host_image(sim)
    glob = sim._store.globals_to_numpy()
    work = sim._store.wwork.to_numpy()
    p = img.particles
    new = {k: np.zeros_like(p[k]) for k in ("wht", "whr", "wdm", "wrec")}
    bonds = np.zeros_like(img.wall_bonds)
    table = np.zeros_like(glob["walls"])
    wforce = np.zeros_like(glob["wforce"])
    wwork = np.zeros_like(work)
    for k, (w, src) in enumerate(zip(walls, source, strict=True)):
        table[k] = w.row()
        if src is None:
            continue
        for key, arr in new.items():
            arr[:, k] = p[key][:, src]
        bonds |= ((img.wall_bonds >> (WALL_BOND_BIT + src)) & 1) << (WALL_BOND_BIT + k)
        wforce[k], wwork[k] = glob["wforce"][src], work[src]
        if keep_rows:
            table[k] = glob["walls"][src]
    p.update(new)
    img.wall_bonds = bonds
    old = sim.walls
    sim.walls = walls
    try:
        load_image(sim, img)  # a new store when the walls outgrow its wall-force columns
    except ConfigError:
        sim.walls = old
        raise
    s = sim._store
    s.walls.from_numpy(table)
    s.wforce.from_numpy(wforce)
    s.wwork.from_numpy(wwork)
    mode = np.zeros(MAX_WALLS, np.int32)
    wmat = np.zeros(MAX_WALLS, np.int32)
    for k, w in enumerate(walls):
        mode[k], wmat[k] = w.mode_code, sim.materials.index(w.material)
    s.wmode.from_numpy(mode)
    s.wmat.from_numpy(wmat)
    _changed(sim)


def set_walls(sim: Simulation, walls: Sequence[Wall]) -> None:
    """See `Simulation.set_walls`: each new wall matches the first unmatched old wall of its name."""
    free = list(range(len(sim.walls)))
    source: list[int | None] = []
    for w in walls:
        hit = next((k for k in free if sim.walls[k].name == getattr(w, "name", None)), None)
        if hit is not None:
            free.remove(hit)
        source.append(hit)
    apply_walls(sim, walls, source, keep_rows=False)


def current_wall_positions(sim: Simulation) -> list[Wall]:
    """The walls with ``point_m`` at their current (moved) position."""
    from dataclasses import replace

    tab = sim._store.walls.to_numpy().astype(np.float64)
    return [replace(w, point_m=tuple(tab[k, W_PX : W_PX + 3])) for k, w in enumerate(sim.walls)]


# ---------------------------------------------------------------------- particles
def external_indices(sim: Simulation, ids: Any) -> np.ndarray:
    """External indices of the particles with persistent ids ``ids`` (int64; each id once)."""
    want = np.atleast_1d(np.asarray(ids)).reshape(-1)
    if want.size and not np.issubdtype(want.dtype, np.integer):
        raise ConfigError("ids", want.dtype.name, "integer particle ids (sim.ids)")
    want = want.astype(np.int64)
    if len(np.unique(want)) != len(want):
        raise ConfigError("ids", "repeated ids", "each id at most once")
    order = np.argsort(sim.ids, kind="stable")
    pos = np.minimum(np.searchsorted(sim.ids[order], want), max(len(order) - 1, 0))
    found = (sim.ids[order][pos] == want) if len(order) else np.zeros(len(want), bool)
    if not np.all(found):
        raise ConfigError("ids", int(want[~found][0]), "ids of particles in the simulation (sim.ids)")
    return order[pos].astype(np.int64)


def remove_particles(sim: Simulation, ids: Any) -> np.ndarray:
    """See `Simulation.remove_particles`."""
    idx = external_indices(sim, ids)
    if len(idx) == 0:
        return np.zeros(0, np.int64)
    keep = np.ones(sim.n, bool)
    keep[idx] = False
    # Refuse before anything changed (a larger automatic skin may not fit the box).
    sim._skin_for(sim._store.to_external(sim._radii(), sim.n)[keep])
    removed = sim.ids[idx].copy()
    for e in sim.extensions:
        e.on_particles_removed(sim, removed.copy())
    new_index = kept_index_map(sim.ids, removed)
    img = host_image(sim)
    img.particles = {k: v[keep] for k, v in img.particles.items()}
    img.wall_bonds = img.wall_bonds[keep]
    h = img.hist
    both = keep[h["i"]] & keep[h["j"]]
    img.hist = {k: v[both] for k, v in h.items()}
    img.hist["i"], img.hist["j"] = new_index[img.hist["i"]], new_index[img.hist["j"]]
    sim.ids = sim.ids[keep]
    sim.fields.keep(keep)
    load_image(sim, img)
    _changed(sim)
    return removed


def _internal(sim: Simulation, ids: Any) -> np.ndarray:
    return sim._store.intern.to_numpy()[external_indices(sim, ids)].astype(np.int64)


def _per_particle(name: str, values: Any, k: int) -> np.ndarray:
    a = np.asarray(values, dtype=float).reshape(-1)
    if a.size == 1:
        a = np.full(k, float(a[0]))
    if a.shape != (k,) or not np.all(np.isfinite(a)) or not np.all(a > 0):
        raise ConfigError(name, "array", f"one or {k} finite values > 0")
    return a


def set_radii(sim: Simulation, ids: Any, radii_m: Any, rescale_mass: bool) -> None:
    """See `Simulation.set_radii`."""
    ii = _internal(sim, ids)
    s, n = sim._store, sim.n
    r_new = _per_particle("radii_m", radii_m, len(ii))
    r = s.r.to_numpy()
    invm, inv_i = s.invm.to_numpy(), s.invI.to_numpy()
    r_all = r[:n].astype(np.float64)
    r_old = r_all[ii].copy()
    r_all[ii] = r_new
    reach, skin = sim._skin_for(r_all)
    mobile = invm[ii] > 0
    mass = 1.0 / np.where(mobile, invm[ii], 1.0)
    gm = s.gm.to_numpy()
    if rescale_mass:
        mass = mass * (r_new / r_old) ** 3
        gm[ii] = gm[ii] * (r_new / r_old) ** 3
    invm[ii] = np.where(mobile, 1.0 / mass, 0.0)
    inv_i[ii] = np.where(mobile, 1.0 / (0.4 * mass * r_new**2), 0.0)
    r[ii] = r_new
    s.r.from_numpy(r)
    s.invm.from_numpy(invm)
    s.invI.from_numpy(inv_i)
    s.gm.from_numpy(gm)
    sim.cohesion_reach_m = reach
    sim._nl.assign_levels(s, r_all, skin)  # internal order, as the store holds it
    sim._invalidate(list_=True)  # R* and m* of the listed pairs
    _changed(sim)


def set_masses(sim: Simulation, ids: Any, masses_kg: Any, gravitational_masses_kg: Any = None) -> None:
    """See `Simulation.set_masses`."""
    ii = _internal(sim, ids)
    s = sim._store
    m = _per_particle("masses_kg", masses_kg, len(ii))
    if gravitational_masses_kg is not None:
        gm = s.gm.to_numpy()
        gm[ii] = _per_particle("gravitational_masses_kg", gravitational_masses_kg, len(ii))
        s.gm.from_numpy(gm)
    invm, inv_i = s.invm.to_numpy(), s.invI.to_numpy()
    if np.any(invm[ii] == 0):
        first = int(sim.ids[s.ext.to_numpy()[ii[invm[ii] == 0][0]]])
        raise ConfigError("ids", first, "ids of mobile particles (a fixed one has no mass to set)")
    r = s.r.to_numpy()[ii]
    invm[ii] = 1.0 / m
    inv_i[ii] = 1.0 / (0.4 * m * r**2)
    s.invm.from_numpy(invm)
    s.invI.from_numpy(inv_i)
    sim._invalidate(list_=True)  # m* of the listed pairs
    _changed(sim)


def set_material(sim: Simulation, ids: Any, material: str | int, rescale_mass: bool) -> None:
    """See `Simulation.set_material`."""
    ii = _internal(sim, ids)
    s = sim._store
    nmat = len(sim.materials.materials)
    k = int(material) if isinstance(material, (int, np.integer)) else sim.materials.index(str(material))
    if not 0 <= k < nmat:
        raise ConfigError("material", material, f"a name or an index < {nmat}")
    mat = s.mat.to_numpy()
    mat[ii] = k
    s.mat.from_numpy(mat)
    if rescale_mass:
        invm, inv_i = s.invm.to_numpy(), s.invI.to_numpy()
        r = s.r.to_numpy()[ii].astype(np.float64)
        mass = 4.0 / 3.0 * np.pi * r**3 * sim.materials.materials[k].density_kg_per_m3
        mobile = invm[ii] > 0
        invm[ii] = np.where(mobile, 1.0 / mass, 0.0)
        inv_i[ii] = np.where(mobile, 1.0 / (0.4 * mass * r**2), 0.0)
        gm = s.gm.to_numpy()
        gm[ii] = mass
        s.invm.from_numpy(invm)
        s.invI.from_numpy(inv_i)
        s.gm.from_numpy(gm)
    sim._invalidate(list_=rescale_mass)
    _changed(sim)


# ---------------------------------------------------------------------- snapshots
_PARTICLE_ARRAYS = (
    "x", "v", "w", "f", "tq", "xref", "r", "invm", "invI", "gm", "mat", "level", "ext", "intern", "wflag",
    "wht",
)
"""Store fields a step reads (internal order; scratch such as ``wpf``, ``cell_of`` is rewritten first)."""
_GLOBAL_ARRAYS = ("dom", "walls", "wforce", "wwork")
_PAIR_ARRAYS = ("j", "ht", "rm", "pair_f", "pair_tj", "rev_k")


@dataclass
class LiveState:
    """A deep in-memory copy of a simulation (`Simulation.snapshot_state`): what a checkpoint holds
    (model description, particles, pair and wall history, walls, extensions, agent fields, step, time,
    time step) plus the kernels' own view of it (internal order, neighbour list), so that
    `Simulation.restore_state` continues bit for bit. Restore it only into the simulation it came from.
    """

    model: dict[str, Any]
    """`Simulation.describe` at the snapshot (JSON-able)."""
    config: dict[str, Any]
    counters: dict[str, Any]
    store: dict[str, np.ndarray]
    pairs: dict[str, np.ndarray]
    neighbors: dict[str, Any]
    extensions: list[tuple[Extension, dict[str, np.ndarray]]]
    fields: tuple[list[dict[str, Any]], dict[str, np.ndarray]]
    owner: int = field(default=0, repr=False)

    def __repr__(self) -> str:
        # The arrays would fill a screen; the point in time says which snapshot it is.
        return f"LiveState(step={self.step}, time_s={self.time_s:.6g}, n={self.counters['n']})"

    @property
    def step(self) -> int:
        """Step count at the snapshot."""
        return int(self.counters["step"])

    @property
    def time_s(self) -> float:
        """Simulated time at the snapshot (s)."""
        return float(self.counters["time_s"])


_CONFIG_ATTRS = (
    "contact",
    "guards",
    "background_damping_per_s",
    "temperature_K",
    "shear_rate_per_s",
    "_dt_fixed",
    "rayleigh_fraction",
    "steps_per_contact",
    "impact_speed",
    "_skin_user",
)
_COUNTER_ATTRS = (
    "step",
    "time_s",
    "dt_s",
    "n",
    "_next_id",
    "_forces_valid",
    "_list_valid",
    "_le_drift_m",
    "cohesion_reach_m",
    "_energy_ref",
    "_wall_work_J",
    "_wall_work_at_ref_J",
    "_driven_fixed",
)


def snapshot_state(sim: Simulation) -> LiveState:
    """See `Simulation.snapshot_state`."""
    s, nl, n = sim._store, sim._nl, sim.n
    store = {k: getattr(s, k).to_numpy()[:n].copy() for k in _PARTICLE_ARRAYS}
    for k, on in (("whr", s.rolling), ("wdm", s.plastic), ("wrec", s.record)):
        if on:
            store[k] = getattr(s, k).to_numpy()[:n].copy()
    for k in _GLOBAL_ARRAYS:
        store[k] = getattr(s, k).to_numpy().copy()
    pairs: dict[str, np.ndarray] = {}
    if nl.pairs is not None:
        p, m = nl.pairs, nl.n_pairs
        pairs = {k: getattr(p, k).to_numpy()[:m].copy() for k in _PAIR_ARRAYS}
        for k, on in (("hr", nl.rolling), ("dm", nl.plastic), ("hc", nl.cohesion)):
            if on:
                pairs[k] = getattr(p, k).to_numpy()[:m].copy()
        pairs["start"] = p.start.to_numpy()[: nl.n + 1].copy()
        pairs["rev_start"] = p.rev_start.to_numpy()[: nl.n + 1].copy()
    config = {k: copy.deepcopy(getattr(sim, k)) for k in _CONFIG_ATTRS}
    config["materials"] = sim.materials.materials
    config["overrides"] = dict(sim.materials.overrides)
    config["walls"] = [copy.copy(w) for w in sim.walls]
    config["gravity"] = sim.gravity.copy()
    config["scalings"] = copy.deepcopy(sim.scalings)
    counters = {k: getattr(sim, k) for k in _COUNTER_ATTRS}
    counters["time_step_report"] = copy.deepcopy(sim.time_step_report)
    counters["ids"] = sim.ids.copy()
    neighbors = {
        "n": nl.n,
        "n_pairs": nl.n_pairs,
        "skin_m": nl.skin_m,
        "n_levels": nl.n_levels,
        "level_rmax": nl.level_rmax.copy(),
        "builds": nl.builds,
        "ordered": nl._order_store is not None,
        "has_pairs": nl.pairs is not None,
    }
    exts = [(e, {k: np.array(v, copy=True) for k, v in e.state_dict().items()}) for e in sim.extensions]
    return LiveState(
        model=sim.describe(),
        config=config,
        counters=counters,
        store=store,
        pairs=pairs,
        neighbors=neighbors,
        extensions=exts,
        fields=(sim.fields.describe(), sim.fields.copy_arrays()),
        owner=id(sim._live_token),
    )


def _put(dst: Any, rows: np.ndarray) -> None:
    """Write ``rows`` into the first rows of Taichi field ``dst`` (the rest keeps its values)."""
    full = dst.to_numpy()
    full[: len(rows)] = rows
    dst.from_numpy(full)


def restore_state(sim: Simulation, snap: LiveState) -> None:
    """See `Simulation.restore_state`."""
    if not isinstance(snap, LiveState) or snap.owner != id(sim._live_token):
        raise ConfigError("snapshot", type(snap).__name__, "a LiveState taken from this simulation")
    c, k = snap.config, snap.counters
    for a in _CONFIG_ATTRS:
        setattr(sim, a, copy.deepcopy(c[a]))
    sim.materials = MaterialTable(c["materials"], dict(c["overrides"]))
    sim.walls = [copy.copy(w) for w in c["walls"]]
    sim.gravity = c["gravity"].copy()
    sim.scalings = copy.deepcopy(c["scalings"])
    n = int(k["n"])
    if not _storage_fits(sim, n):
        sim._alloc_store(max(n, sim._store.cap))
    s = sim._store
    for name, rows in snap.store.items():
        if name in _GLOBAL_ARRAYS:
            getattr(s, name).from_numpy(rows)
        else:
            _put(getattr(s, name), rows)
    mode = np.zeros(MAX_WALLS, np.int32)
    wmat = np.zeros(MAX_WALLS, np.int32)
    for i, w in enumerate(sim.walls):
        mode[i], wmat[i] = w.mode_code, sim.materials.index(w.material)
    s.wmode.from_numpy(mode)
    s.wmat.from_numpy(wmat)
    sim._upload_table()  # a pure function of materials, contact model and temperature
    _fit_neighbor_list(sim)
    nl, nb = sim._nl, snap.neighbors
    if nb["has_pairs"]:
        p = nl.pairs
        if p is None or p.n_cap < nb["n"] or p.p_cap < nb["n_pairs"]:
            nl.destroy()
            nl.pairs = nl._new_pairs(nb["n"], nb["n_pairs"])
        for name, rows in snap.pairs.items():
            _put(getattr(nl.pairs, name), rows)
    else:
        nl.destroy()
    nl.n, nl.n_pairs, nl.skin_m, nl.n_levels = nb["n"], nb["n_pairs"], nb["skin_m"], nb["n_levels"]
    nl.level_rmax, nl.builds = nb["level_rmax"].copy(), nb["builds"]
    nl._order_store = s if nb["ordered"] else None
    for a in _COUNTER_ATTRS:
        setattr(sim, a, k[a])
    sim.time_step_report = copy.deepcopy(k["time_step_report"])
    sim.ids = k["ids"].copy()
    sim._last_good = None
    attached = list(sim.extensions)
    sim.extensions = []
    for ext, state in snap.extensions:
        if not any(e is ext for e in attached):
            ext.attach(sim)
        ext.load_state_dict({key: v.copy() for key, v in state.items()})
        sim.extensions.append(ext)
    sim.fields.load(*snap.fields)
    _changed(sim)


def guards_checked(guards: Guards) -> Guards:
    """``guards`` if it is a `Guards`."""
    from electrodem.engine.simulation import Guards

    if not isinstance(guards, Guards):
        raise ConfigError("guards", type(guards).__name__, "an electrodem.engine.Guards")
    return guards


# ---------------------------------------------------------------------- staged steps
def advance_staged(sim: Simulation, k: int) -> None:
    """``k`` steps of `Simulation._advance` when an extension works at ``pre_force`` or ``end_of_step``.

    The fused step kernel does the previous step's second kick, this step's first kick and drift and
    the forces in one launch; here it runs without its forces when a ``pre_force`` extension must see
    the drifted state first (then `forces` after the hook), and `finish` closes every step before the
    ``end_of_step`` hooks. The arithmetic of each particle is that of the fused step. ``sim.step`` and
    ``sim.time_s`` follow each step, so hooks see the step they are called in. A hook may change the
    particles or the model (the list is rebuilt and forces recomputed as needed), but not the time step.
    """
    from electrodem.engine.integrate import drifted, finish, forces, step

    step0, time0, dt = sim.step, sim.time_s, sim.dt_s
    tang = sim.contact.tangential == "mindlin"
    roll, coh = sim.contact.rolling_code, sim.contact.cohesion_code
    open_ = False  # the last step's second half kick is still to be given
    pending = False  # drifted, forces not computed yet: finishing would use stale forces
    try:
        for t in range(k):
            s, nl, n, nw = sim._store, sim._nl, sim.n, len(sim.walls)
            base = nl.skin_m - sim.cohesion_reach_m
            trigger = (0.5 * base) ** 2
            dshift = abs(sim.shear_rate_per_s * float(sim.box_m[2])) * dt
            if dshift > 0.0:
                # The Lees–Edwards allowance of `Simulation._advance`.
                sim._le_drift_m += dshift
                h = 0.5 * base - 1.5 * sim._le_drift_m
                trigger = h * h if h > 0.125 * base else -1.0
            t_now = time0 + (t + 1) * dt
            pre = [e for e in sim.extensions if e.stage == "pre_force"]
            pending = True
            if pre:
                step(s, nl.pairs, n, nw, int(open_), -1.0, tang, roll, coh)  # kicks and drift only
                sim.step, sim.time_s = step0 + t + 1, t_now
                for e in pre:
                    e.on_stage(sim, "pre_force", t_now, dt)
                s, n, nw = sim._store, sim.n, len(sim.walls)
                tang = sim.contact.tangential == "mindlin"
                roll, coh = sim.contact.rolling_code, sim.contact.cohesion_code
                if not sim._list_valid or drifted(s, n, trigger):
                    sim._rebuild(t_now)
                forces(s, sim._nl.pairs, n, nw, tang, roll, coh)
                sim._forces_valid = True
            elif not step(s, nl.pairs, n, nw, int(open_), trigger, tang, roll, coh):
                sim._rebuild(t_now)
                forces(s, sim._nl.pairs, n, nw, tang, roll, coh)
            pending = False
            open_ = True
            sim.step, sim.time_s = step0 + t + 1, t_now
            sim._extension_forces(t_now, dt)
            end = [e for e in sim.extensions if e.stage == "end_of_step"]
            if end:
                finish(s, sim._nl.pairs, n)
                open_ = False
                for e in end:
                    e.on_stage(sim, "end_of_step", t_now, dt)
                tang = sim.contact.tangential == "mindlin"
                roll, coh = sim.contact.rolling_code, sim.contact.cohesion_code
                if not (sim._list_valid and sim._forces_valid):
                    sim._prime()  # the step is complete: forces of the changed state, no kick
    finally:
        if open_ and not pending:
            finish(sim._store, sim._nl.pairs, sim.n)
    sim.step = step0 + k
    sim.time_s = float(time0 + k * dt)
