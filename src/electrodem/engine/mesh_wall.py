"""Triangle-mesh walls as a force extension: plates, rolls and dies from STL/OBJ files (via trimesh).

A `MeshWall` is a rigid triangle mesh. It moves by a prescribed translation velocity of its rotation
centre and an angular velocity about that centre (a roll turning about its axis, a plate moving down):
at time t a body point X sits at c(t) + Q(t) (X - c0), with c(t) = c0 + v t and Q(t) the accumulated
rotation. Contacts are computed in the body frame (the particle centre is mapped back by Q^T), so the
broad-phase grid is built once and never rebuilt as the mesh moves.

Narrow phase: closest point of the sphere centre on each candidate triangle (Ericson, Real-Time
Collision Detection §5.1.5), classified as a face, edge or vertex feature. A sphere near a shared edge
or vertex would otherwise touch the same surface point through several triangles. The rule used here
keeps only contacts at local minima of the distance to the mesh surface:

* a face contact is always kept;
* an edge contact is kept only when every triangle sharing that edge also finds its closest point on
  that same edge, and then only once (by the lowest-index triangle);
* a vertex contact likewise only when every triangle of the vertex's one-ring finds that vertex.

So a sphere on a flat subdivided plate has exactly one contact wherever it sits (face, edge or vertex
regions join continuously), a sphere on a convex ridge has one, and a sphere in a concave valley has
one per side (two genuine contacts). Each contact uses the Hertz–Mindlin sphere–wall law
(`electrodem.engine.contact.contact_law`, R* = r, m* = the sphere mass, lever r - overlap), with the
mesh velocity v + omega x (p - c) at the contact point p.

Tangential history: up to `MAX_SLOTS` contacts per particle (external index, so re-ordering does not
matter). A contact continues the history of last step's contact whose body-frame contact point lies
within half the sphere radius, so a sphere rolling from one triangle onto the next keeps its
tangential spring.

Broad phase: a uniform grid over the body-frame bounding box; every triangle is listed in the cells its
bounding box, inflated by the largest particle radius, overlaps; a particle only tests the triangles of
the one cell that holds its centre. Cell size = max(median triangle extent, 2 x largest radius). Build
O(T) once (again only when larger particles appear), query O(N k) per step with k the triangles per
cell (a few), independent of the total number of triangles T.

Limits: the mesh is not replicated across periodic boundaries (a plate should cover the periodic
cross-section [0, Lx) x [0, Ly); a contact through a periodic face is not seen); fixed particles do not
touch the mesh (as with planar walls).
"""

import math
from pathlib import Path
from typing import Any

import numpy as np
import taichi as ti

from electrodem.config import ConfigError
from electrodem.engine import arch
from electrodem.engine.contact import table_contact_law
from electrodem.engine.extensions import kept_index_map
from electrodem.engine.model import P_ESTAR
from electrodem.engine.tools import ToolExtension

MAX_SLOTS = 4
"""History slots per particle (simultaneous mesh contacts of one sphere that keep tangential history)."""
N_OUT = 12
O_F, O_T, O_N, O_P, O_OVER, O_E, O_W, O_AW = 0, 3, 6, 7, 8, 9, 10, 11
N_STEP_OUT = 10  # slots reset at every evaluation; O_W, O_AW accumulate the work (J) over the run
# Pose array layout (float): Q row-major (9), centre c (3), body centre c0 (3), velocity v (3),
# angular velocity w (3), torque reference point (3), grid origin (3), cell size, grid dims (3).
PQ, PC, PC0, PV, PW, PREF, PO, PH, PD = 0, 9, 12, 15, 18, 21, 24, 27, 28
N_POSE = 31


@ti.func
def _closest_on_tri(p, a, b, c):
    """Closest point of triangle abc to p and its feature: 0 face, 1 edge ab, 2 edge bc, 3 edge ca,
    4 vertex a, 5 vertex b, 6 vertex c (Voronoi regions, Ericson 2005 §5.1.5)."""
    ab = b - a
    ac = c - a
    ap = p - a
    d1 = ab.dot(ap)
    d2 = ac.dot(ap)
    bp = p - b
    d3 = ab.dot(bp)
    d4 = ac.dot(bp)
    cp = p - c
    d5 = ab.dot(cp)
    d6 = ac.dot(cp)
    vc = d1 * d4 - d3 * d2
    vb = d5 * d2 - d1 * d6
    va = d3 * d6 - d5 * d4
    q = a
    feat = 4
    if d1 <= 0.0 and d2 <= 0.0:
        q = a
        feat = 4
    elif d3 >= 0.0 and d4 <= d3:
        q = b
        feat = 5
    elif vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
        q = a + d1 / (d1 - d3) * ab
        feat = 1
    elif d6 >= 0.0 and d5 <= d6:
        q = c
        feat = 6
    elif vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
        q = a + d2 / (d2 - d6) * ac
        feat = 3
    elif va <= 0.0 and (d4 - d3) >= 0.0 and (d5 - d6) >= 0.0:
        q = b + (d4 - d3) / ((d4 - d3) + (d5 - d6)) * (c - b)
        feat = 2
    else:
        denom = 1.0 / (va + vb + vc)
        q = a + ab * (vb * denom) + ac * (vc * denom)
        feat = 0
    return q, feat


@ti.func
def _feature(t, p, verts: ti.template(), faces: ti.template(), tedge: ti.template()):
    """(kind, global id, closest point) of triangle t for point p: kind 0 face (id t), 1 edge (global
    edge id), 2 vertex (global vertex id)."""
    q, feat = _closest_on_tri(p, verts[faces[t, 0]], verts[faces[t, 1]], verts[faces[t, 2]])
    kind = 0
    gid = t
    if feat >= 4:
        kind = 2
        gid = faces[t, feat - 4]
    elif feat >= 1:
        kind = 1
        gid = tedge[t, feat - 1]
    return kind, gid, q


@ti.kernel
def _mesh_forces(
    s: ti.template(),
    n: ti.i32,
    verts: ti.types.ndarray(),
    faces: ti.types.ndarray(),
    tedge: ti.types.ndarray(),
    edge_start: ti.types.ndarray(),
    edge_tris: ti.types.ndarray(),
    vert_start: ti.types.ndarray(),
    vert_tris: ti.types.ndarray(),
    cell_start: ti.types.ndarray(),
    cell_tris: ti.types.ndarray(),
    pose: ti.types.ndarray(),
    hcp: ti.types.ndarray(),
    ht: ti.types.ndarray(),
    hr: ti.types.ndarray(),
    hstamp: ti.types.ndarray(),
    out: ti.types.ndarray(),
    prev: ti.i32,
    cur: ti.i32,
    mw: ti.i32,
    dt: float,
    tangential: ti.template(),
    rolling: ti.template(),
):
    """Add the mesh's contact forces to the particles and sum its reports in ``out``."""
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for k in range(N_STEP_OUT):
        out[k] = 0.0
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for i in range(n):
        im_i = s.invm[i]
        if im_i > 0.0:
            xi = s.x[i]
            ri = s.r[i]
            e = s.ext[i]
            zero = xi * 0.0
            q_rot = ti.Matrix.zero(float, 3, 3)
            for a in ti.static(range(3)):
                for b in ti.static(range(3)):
                    q_rot[a, b] = pose[PQ + 3 * a + b]
            cen = ti.Vector([pose[PC], pose[PC + 1], pose[PC + 2]])
            cen0 = ti.Vector([pose[PC0], pose[PC0 + 1], pose[PC0 + 2]])
            xb = cen0 + q_rot.transpose() @ (xi - cen)
            h = pose[PH]
            inside = True
            cell = 0
            for a in ti.static(range(3)):
                ia = ti.floor((xb[a] - pose[PO + a]) / h, ti.i32)
                dim = ti.cast(pose[PD + a], ti.i32)
                if ia < 0 or ia >= dim:
                    inside = False
                cell = cell * dim + ia
            if inside:
                for u in range(cell_start[cell], cell_start[cell + 1]):
                    t = cell_tris[u]
                    kind, gid, q = _feature(t, xb, verts, faces, tedge)
                    db = xb - q
                    dist2 = db.dot(db)
                    if dist2 < ri * ri and dist2 > 0.0:
                        keep = True
                        if kind == 1:
                            for w_ in range(edge_start[gid], edge_start[gid + 1]):
                                t2 = edge_tris[w_]
                                if t2 != t:
                                    k2, g2, _q2 = _feature(t2, xb, verts, faces, tedge)
                                    if t2 < t or k2 != 1 or g2 != gid:
                                        keep = False
                        elif kind == 2:
                            for w_ in range(vert_start[gid], vert_start[gid + 1]):
                                t2 = vert_tris[w_]
                                if t2 != t:
                                    k2, g2, _q2 = _feature(t2, xb, verts, faces, tedge)
                                    if t2 < t or k2 != 2 or g2 != gid:
                                        keep = False
                        if keep:
                            dist = ti.sqrt(dist2)
                            delta = ri - dist
                            nrm = q_rot @ (db / dist)
                            pc = cen + q_rot @ (q - cen0)
                            vel = ti.Vector([pose[PV], pose[PV + 1], pose[PV + 2]])
                            omg = ti.Vector([pose[PW], pose[PW + 1], pose[PW + 2]])
                            vw = vel + omg.cross(pc - cen)
                            # History slot: last step's contact whose contact point is within r/2.
                            slot = -1
                            tol2 = 0.25 * ri * ri
                            for k in range(MAX_SLOTS):
                                if slot < 0 and hstamp[e, k] == prev:
                                    dq = hcp[e, k] - q
                                    if dq.dot(dq) < tol2:
                                        slot = k
                            h_t0 = zero
                            h_r0 = zero
                            if slot >= 0:
                                h_t0 = ht[e, slot]
                                h_r0 = hr[e, slot]
                            elif dt > 0.0:
                                for k in range(MAX_SLOTS):
                                    if slot < 0 and hstamp[e, k] != cur and hstamp[e, k] != prev:
                                        slot = k
                                for k in range(MAX_SLOTS):
                                    if slot < 0 and hstamp[e, k] != cur:
                                        slot = k
                                if slot < 0:
                                    out[O_OVER] += 1.0
                            mi = s.mat[i]
                            force, t_i, _t_j, h_t, h_r, _fn = table_contact_law(
                                s.table,
                                mi,
                                mw,
                                nrm,
                                delta,
                                ri,
                                1.0 / im_i,
                                ri - delta,
                                0.0,
                                s.v[i] - vw,
                                s.w[i],
                                zero,
                                h_t0,
                                h_r0,
                                dt,
                                tangential,
                                rolling,
                                0.0,
                                0.0,
                                False,
                            )
                            if dt > 0.0 and slot >= 0:
                                hstamp[e, slot] = cur
                                hcp[e, slot] = q
                                ht[e, slot] = h_t
                                hr[e, slot] = h_r
                            s.f[i] += force
                            s.tq[i] += t_i
                            ref = ti.Vector([pose[PREF], pose[PREF + 1], pose[PREF + 2]])
                            tq = (pc - ref).cross(-force)
                            for a in ti.static(range(3)):
                                out[O_F + a] -= force[a]
                                out[O_T + a] += tq[a]
                            out[O_N] += 1.0
                            # Hertz elastic energy of the (elastic) mesh contact, for the energy guard.
                            out[O_E] += (
                                0.5333333333333333 * s.table[mi, mw, P_ESTAR] * ti.sqrt(ri) * delta**2.5
                            )
                            out[O_P] += force.dot(vw)
    # Serial epilogue (one iteration): the work integrates the power of this evaluation over dt.
    ti.loop_config(serialize=arch.SERIAL_LOOPS)
    for _ in range(1):
        out[O_W] += out[O_P] * dt
        out[O_AW] += ti.abs(out[O_P]) * dt


def _csr(keys: np.ndarray, values: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """(start (n_keys + 1), values sorted by key) as int32."""
    order = np.argsort(keys, kind="stable")
    start = np.zeros(n_keys + 1, np.int64)
    np.cumsum(np.bincount(keys, minlength=n_keys), out=start[1:])
    return start.astype(np.int32), values[order].astype(np.int32)


class MeshGeometry:
    """Triangles in the body frame with the adjacency the contact rule needs and a flat-plate test.

    ``vertices_m`` (V, 3) in m, ``faces`` (T, 3) vertex indices; zero-area triangles are dropped.
    """

    def __init__(self, vertices_m: np.ndarray, faces: np.ndarray) -> None:
        v = np.asarray(vertices_m, dtype=float)
        f = np.asarray(faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3 or not np.all(np.isfinite(v)) or len(v) < 3:
            raise ConfigError("mesh.vertices_m", v.shape, "a finite (V >= 3, 3) array (m)")
        if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.min() < 0 or f.max() >= len(v):
            raise ConfigError("mesh.faces", f.shape, f"a (T >= 1, 3) array of vertex indices < {len(v)}")
        cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        area2 = np.linalg.norm(cross, axis=1)
        scale = float(np.ptp(v, axis=0).max()) or 1.0
        good = area2 > 1e-12 * scale**2
        if not np.any(good):
            raise ConfigError("mesh.faces", len(f), "at least one triangle of non-zero area")
        self.vertices, self.faces = v, f[good]
        self.normals = cross[good] / area2[good, None]
        self.areas = 0.5 * area2[good]
        nt = len(self.faces)
        pairs = np.stack([self.faces[:, [0, 1]], self.faces[:, [1, 2]], self.faces[:, [2, 0]]], axis=1)
        pairs = np.sort(pairs.reshape(-1, 2), axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        self.tri_edges = inv.reshape(nt, 3).astype(np.int32)
        tri_of = np.repeat(np.arange(nt), 3)
        self.edge_start, self.edge_tris = _csr(inv.reshape(-1), tri_of, len(uniq))
        self.vert_start, self.vert_tris = _csr(self.faces.reshape(-1), tri_of, len(v))

    @property
    def n_triangles(self) -> int:
        return len(self.faces)

    def plate(self) -> tuple[np.ndarray, float] | None:
        """(unit normal, total area m^2) when all triangles are coplanar-parallel, else None."""
        n0 = self.normals[0]
        if np.all(np.abs(self.normals @ n0) > 1.0 - 1e-9):
            return n0.copy(), float(self.areas.sum())
        return None

    def grid(self, pad_m: float) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
        """Uniform bins over the bounding box inflated by ``pad_m`` (the largest particle radius):
        (origin, cell size, dims, cell_start, cell_tris); each triangle is listed in every cell its
        inflated bounding box overlaps."""
        tv = self.vertices[self.faces]
        lo_t, hi_t = tv.min(axis=1) - pad_m, tv.max(axis=1) + pad_m
        ext = float(np.median((hi_t - lo_t).max(axis=1) - 2.0 * pad_m))
        h = max(ext, 2.0 * pad_m, 1e-12)
        lo, hi = lo_t.min(axis=0), hi_t.max(axis=0)
        while True:
            dims = np.maximum(np.ceil((hi - lo) / h).astype(np.int64), 1)
            if dims.prod() <= 8 * self.n_triangles + 4096:
                break
            h *= 1.25
        i0 = np.clip(np.floor((lo_t - lo) / h).astype(np.int64), 0, dims - 1)
        i1 = np.clip(np.floor((hi_t - lo) / h).astype(np.int64), 0, dims - 1)
        size = i1 - i0 + 1
        counts = size.prod(axis=1)
        tri = np.repeat(np.arange(self.n_triangles), counts)
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        sz = size[tri]
        iz = local % sz[:, 2]
        iy = (local // sz[:, 2]) % sz[:, 1]
        ix = local // (sz[:, 2] * sz[:, 1])
        cx, cy, cz = i0[tri, 0] + ix, i0[tri, 1] + iy, i0[tri, 2] + iz
        cell = (cx * dims[1] + cy) * dims[2] + cz
        start, tris = _csr(cell, tri, int(dims.prod()))
        return lo, h, dims, start, tris


def _rotation(omega_dt: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``omega_dt`` (rad), Rodrigues' formula."""
    th = float(np.linalg.norm(omega_dt))
    if th == 0.0:
        return np.eye(3)
    k = omega_dt / th
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(th) * kx + (1 - math.cos(th)) * kx @ kx


class MeshWall(ToolExtension):
    """A rigid triangle mesh moving with prescribed translation and rotation (see module docstring).

    Parameters
    ----------
    mesh : a ``trimesh.Trimesh``, a path to an STL/OBJ file (loaded with ``trimesh.load``), or a
        ``(vertices_m, faces)`` pair. Coordinates are in m, in the simulation frame at attach time.
    material : name of the mesh's material.
    velocity_m_per_s : translation velocity of the mesh (m/s).
    angular_velocity_rad_per_s : angular velocity about ``center_m`` (rad/s, world frame).
    center_m : centre of rotation at attach time (m); default the centroid of the vertices.
    torque_reference_m : point about which the torque is reported; default the (moving) centre.
    area_m2 : area for the pressure; default the mesh area when it is a flat plate.
    scale : factor applied to file/trimesh coordinates (e.g. 1e-3 for an STL in mm).
    name : unique extension name.
    """

    _O_E, _O_W, _O_AW = O_E, O_W, O_AW

    def __init__(
        self,
        mesh: Any,
        material: str,
        velocity_m_per_s: tuple[float, float, float] = (0.0, 0.0, 0.0),
        angular_velocity_rad_per_s: tuple[float, float, float] = (0.0, 0.0, 0.0),
        center_m: tuple[float, float, float] | None = None,
        torque_reference_m: tuple[float, float, float] | None = None,
        area_m2: float | None = None,
        scale: float = 1.0,
        name: str = "mesh",
    ) -> None:
        key = f"mesh[{name}]"
        self.name, self.material = name, str(material)
        self.source = str(mesh) if isinstance(mesh, (str, Path)) else None
        if not (scale > 0 and math.isfinite(scale)):
            raise ConfigError(f"{key}.scale", scale, "a finite factor > 0")
        self.geom: MeshGeometry | None = None
        if mesh is not None:
            self.geom = MeshGeometry(*_mesh_arrays(mesh, scale, key))
        self.velocity = _vec3(velocity_m_per_s, f"{key}.velocity_m_per_s")
        self.omega = _vec3(angular_velocity_rad_per_s, f"{key}.angular_velocity_rad_per_s")
        if center_m is None:
            center = self.geom.vertices.mean(axis=0) if self.geom is not None else np.zeros(3)
        else:
            center = _vec3(center_m, f"{key}.center_m")
        self.center0 = center.copy()
        self.center = center.copy()
        self.ref = (
            None if torque_reference_m is None else _vec3(torque_reference_m, f"{key}.torque_reference_m")
        )
        if area_m2 is not None and not area_m2 > 0:
            raise ConfigError(f"{key}.area_m2", area_m2, "null or > 0 (m^2)")
        self.area_m2 = area_m2
        self.rot = np.eye(3)
        self.counter = 1
        self._out_host = np.zeros(N_OUT)
        self._synced = True
        self._pad = -1.0
        self._cap = 0
        self._sim_real: Any = None

    # ------------------------------------------------------------------ setup
    def attach(self, sim: Any) -> None:
        self._mat = sim.materials.index(self.material)
        self._sim_real = sim.real
        self._np_real = sim.np_real
        self._outbuf = ti.ndarray(sim.real, N_OUT)
        self._outbuf.fill(0)
        self._posebuf = ti.ndarray(sim.real, N_POSE)
        self._ensure_history(max(sim.n, 1))
        if self.geom is not None:
            self._upload_mesh()

    def _upload_mesh(self) -> None:
        g = self.geom
        assert g is not None
        self._verts = ti.Vector.ndarray(3, self._sim_real, shape=len(g.vertices))
        self._verts.from_numpy(g.vertices.astype(self._np_real))
        self._dev: dict[str, Any] = {}
        for k, a in (
            ("faces", g.faces.astype(np.int32)),
            ("tedge", g.tri_edges),
            ("edge_start", g.edge_start),
            ("edge_tris", g.edge_tris),
            ("vert_start", g.vert_start),
            ("vert_tris", g.vert_tris),
        ):
            self._dev[k] = _int_ndarray(a)
        self._pad = -1.0

    def _ensure_grid(self, sim: Any) -> None:
        """(Re)build the bins when no grid exists or a particle larger than the grid's pad appeared."""
        if self._n_seen == sim.n and self._pad > 0:
            return
        self._n_seen = sim.n
        rmax = float(sim._store.r.to_numpy()[: sim.n].max()) if sim.n else 0.0
        if rmax <= self._pad and self._pad > 0:
            return
        assert self.geom is not None
        pad = rmax * 1.001
        lo, h, dims, start, tris = self.geom.grid(pad)
        self._grid = (lo, h, dims)
        self._dev["cell_start"] = _int_ndarray(start)
        self._dev["cell_tris"] = _int_ndarray(tris if len(tris) else np.zeros(1, np.int32))
        self._pad = pad
        self.grid_info = {"cell_size_m": h, "dims": dims.tolist(), "entries": int(len(tris))}

    def _ensure_history(self, n: int) -> None:
        if n <= self._cap:
            return
        cap = max(64, 1 << (max(n, 1) - 1).bit_length())
        old = self._history_numpy() if self._cap else None
        self._hcp = ti.Vector.ndarray(3, self._sim_real, shape=(cap, MAX_SLOTS))
        self._ht = ti.Vector.ndarray(3, self._sim_real, shape=(cap, MAX_SLOTS))
        self._hr = ti.Vector.ndarray(3, self._sim_real, shape=(cap, MAX_SLOTS))
        self._hstamp = ti.ndarray(ti.i32, (cap, MAX_SLOTS))
        self._cap = cap
        for a in (self._hcp, self._ht, self._hr, self._hstamp):
            a.fill(0)
        self._n_seen = -1
        if old is not None:
            self._history_from_numpy(old)

    def _history_numpy(self) -> dict[str, np.ndarray]:
        return {
            "hcp": self._hcp.to_numpy().astype(np.float64),
            "ht": self._ht.to_numpy().astype(np.float64),
            "hr": self._hr.to_numpy().astype(np.float64),
            "hstamp": self._hstamp.to_numpy(),
        }

    def _history_from_numpy(self, h: dict[str, np.ndarray]) -> None:
        self._ensure_history(len(h["hstamp"]))
        for k, dst in (("hcp", self._hcp), ("ht", self._ht), ("hr", self._hr), ("hstamp", self._hstamp)):
            full = np.zeros(dst.shape + ((3,) if k != "hstamp" else ()), dtype=dst.to_numpy().dtype)
            full[: len(h[k])] = h[k]
            dst.from_numpy(full)

    # ------------------------------------------------------------------ engine hooks
    def on_particles_removed(self, sim: Any, removed_ids: np.ndarray) -> None:
        # The contact history is kept by external index: close up the rows of the removed particles.
        self._ensure_history(sim.n)
        keep = kept_index_map(sim.ids, removed_ids) >= 0
        h = self._history_numpy()
        self._history_from_numpy({k: v[: sim.n][keep] for k, v in h.items()})
        self._n_seen = -1

    def on_model_changed(self, sim: Any) -> None:
        # Material indices follow the table; radii may have grown past the grid's pad.
        self._mat = sim.materials.index(self.material)
        self._n_seen = -1

    def add_forces(self, sim: Any, time_s: float, dt_s: float) -> None:
        if self.geom is None:
            raise ConfigError(f"mesh[{self.name}]", None, "a mesh (restore one with load_state_dict)")
        self._ensure_history(sim.n)
        self._ensure_grid(sim)
        if dt_s > 0:
            self.center = self.center + self.velocity * dt_s
            self.rot = _rotation(self.omega * dt_s) @ self.rot
            self.counter += 1
        lo, h, dims = self._grid
        pose = np.zeros(N_POSE)
        pose[PQ : PQ + 9] = self.rot.reshape(-1)
        pose[PC : PC + 3] = self.center
        pose[PC0 : PC0 + 3] = self.center0
        pose[PV : PV + 3] = self.velocity
        pose[PW : PW + 3] = self.omega
        pose[PREF : PREF + 3] = self.center if self.ref is None else self.ref
        pose[PO : PO + 3] = lo
        pose[PH] = h
        pose[PD : PD + 3] = dims
        self._posebuf.from_numpy(pose.astype(self._np_real))
        d = self._dev
        _mesh_forces(
            sim._store,
            sim.n,
            self._verts,
            d["faces"],
            d["tedge"],
            d["edge_start"],
            d["edge_tris"],
            d["vert_start"],
            d["vert_tris"],
            d["cell_start"],
            d["cell_tris"],
            self._posebuf,
            self._hcp,
            self._ht,
            self._hr,
            self._hstamp,
            self._outbuf,
            self.counter - 1 if dt_s > 0 else self.counter,
            self.counter,
            self._mat,
            float(dt_s),
            sim.contact.tangential == "mindlin",
            sim.contact.rolling_code,
        )
        # Read back lazily: a device-to-host copy per step would cost more than the contacts.
        self._synced = False

    # ------------------------------------------------------------------ reports
    def vertices_now_m(self) -> np.ndarray:
        """World coordinates of the vertices at the current pose (m)."""
        assert self.geom is not None
        return self.center + (self.geom.vertices - self.center0) @ self.rot.T

    def report(self) -> dict[str, Any]:
        """Force of the particles on the mesh (N), torque about the reference point (N m), contacts,
        power (W) and work (J) delivered to the particles; for a flat plate also its current normal,
        the load along it (N, magnitude) and the pressure (Pa)."""
        f = self._out[O_F : O_F + 3].copy()
        rep: dict[str, Any] = {
            "name": self.name,
            "center_m": self.center.copy(),
            "force_N": f,
            "torque_N_m": self._out[O_T : O_T + 3].copy(),
            "contacts": int(round(self._out[O_N])),
            "slot_overflows": int(round(self._out[O_OVER])),
            "power_W": float(self._out[O_P]),
            "work_J": self.work_J,
        }
        plate = self.geom.plate() if self.geom is not None else None
        if plate is not None:
            nrm = self.rot @ plate[0]
            load = abs(float(f @ nrm))
            rep.update(normal=nrm, load_N=load, pressure_Pa=load / (self.area_m2 or plate[1]))
        return rep

    # ------------------------------------------------------------------ checkpoints
    def describe(self) -> dict[str, Any]:
        return {
            "material": self.material,
            "velocity_m_per_s": self.velocity.tolist(),
            "angular_velocity_rad_per_s": self.omega.tolist(),
            "center_m": self.center0.tolist(),
            "torque_reference_m": None if self.ref is None else self.ref.tolist(),
            "area_m2": self.area_m2,
            "source": self.source,
            "n_triangles": self.geom.n_triangles if self.geom is not None else 0,
            "name": self.name,
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        assert self.geom is not None
        return {
            "vertices": self.geom.vertices.copy(),
            "faces": self.geom.faces.copy(),
            "center": self.center.copy(),
            "rot": self.rot.copy(),
            "velocity": self.velocity.copy(),
            "omega": self.omega.copy(),
            "counter": np.array(self.counter),
            "out": self._out.copy(),
            **self._history_numpy(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.geom = MeshGeometry(state["vertices"], state["faces"])
        self._upload_mesh()
        self.center = np.asarray(state["center"], float).copy()
        self.rot = np.asarray(state["rot"], float).copy()
        self.velocity = np.asarray(state["velocity"], float).copy()
        self.omega = np.asarray(state["omega"], float).copy()
        self.counter = int(state["counter"])
        out = np.zeros(N_OUT)
        saved = np.asarray(state["out"], float).reshape(-1)
        out[: saved.size] = saved
        self._outbuf.from_numpy(out.astype(self._outbuf.to_numpy().dtype))
        self._out_host, self._synced = out, True
        self._history_from_numpy({k: np.asarray(state[k]) for k in ("hcp", "ht", "hr", "hstamp")})

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "MeshWall":
        # The triangles come back through load_state_dict (they are arrays, not description).
        return cls(
            None,
            d["material"],
            velocity_m_per_s=tuple(d["velocity_m_per_s"]),
            angular_velocity_rad_per_s=tuple(d["angular_velocity_rad_per_s"]),
            center_m=tuple(d["center_m"]),
            torque_reference_m=None if d["torque_reference_m"] is None else tuple(d["torque_reference_m"]),
            area_m2=d["area_m2"],
            name=d["name"],
        )


def _vec3(value: Any, key: str) -> np.ndarray:
    a = np.asarray(value, dtype=float).reshape(-1)
    if a.size != 3 or not np.all(np.isfinite(a)):
        raise ConfigError(key, value, "a finite 3-vector")
    return a


def _int_ndarray(a: np.ndarray) -> Any:
    a = np.ascontiguousarray(a, dtype=np.int32)
    arr = ti.ndarray(ti.i32, a.shape)
    arr.from_numpy(a)
    return arr


def _mesh_arrays(mesh: Any, scale: float, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of a trimesh, a mesh file or a (vertices, faces) pair."""
    if isinstance(mesh, (str, Path)):
        import trimesh

        path = Path(mesh)
        if not path.is_file():
            raise ConfigError(f"{key}.mesh", str(mesh), "an existing STL/OBJ file")
        loaded = trimesh.load(path, force="mesh")
        return np.asarray(loaded.vertices, float) * scale, np.asarray(loaded.faces)
    if hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        return np.asarray(mesh.vertices, float) * scale, np.asarray(mesh.faces)
    if isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        return np.asarray(mesh[0], float) * scale, np.asarray(mesh[1])
    raise ConfigError(
        f"{key}.mesh", type(mesh).__name__, "a trimesh.Trimesh, an STL/OBJ path or (vertices, faces)"
    )


def plate_mesh(
    x_range_m: tuple[float, float],
    y_range_m: tuple[float, float],
    z_m: float,
    divisions: tuple[int, int] = (1, 1),
) -> tuple[np.ndarray, np.ndarray]:
    """A flat rectangle at height ``z_m`` split into 2 x nx x ny triangles (vertices m, faces), normal +z
    (the winding does not matter to the contact)."""
    nx, ny = divisions
    if nx < 1 or ny < 1:
        raise ConfigError("divisions", divisions, "two integers >= 1")
    xs = np.linspace(*x_range_m, nx + 1)
    ys = np.linspace(*y_range_m, ny + 1)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    v = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, float(z_m))])
    idx = np.arange(v.shape[0]).reshape(nx + 1, ny + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.column_stack([a, b, c]), np.column_stack([a, c, d])])
    return v, faces
