"""The `Microstructure` snapshot: the one object that crosses from simulation to analysis.

Plain NumPy arrays in SI units (metres, kilograms, seconds, siemens) plus a species table and
JSON-able metadata. Saved as a single ``.npz`` that the analysis reads without Taichi or the engine,
so snapshots made by other codes can be analysed too (build one with the constructor).

Conventions
-----------
* The current collector (CC) is the plane z = 0; the electrode grows towards +z (separator side).
* The box spans ``[0, Lx) x [0, Ly) x [0, Lz]``; x and y are periodic by default.
* Positions of periodic axes are kept wrapped into ``[0, L)``.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

ROLES = ("AM", "CB", "SE", "binder", "other")
"""Allowed phase roles: active material, carbon black / conductive additive, solid electrolyte,
binder (PVDF, PTFE, CMC/SBR) and anything else."""

FORMAT_VERSION = 1


class SnapshotError(ValueError):
    """A snapshot file cannot be read: missing, not an ``.npz`` archive, truncated, or not a snapshot.

    ``path`` is the file, ``reason`` one line saying what is wrong with it.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


def _one_line(e: BaseException) -> str:
    """``Type: message`` of an exception, first line only (error messages stay one line)."""
    t = type(e)
    name = t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"
    msg = (str(e).strip().splitlines() or [""])[0]
    return f"{name}: {msg}" if msg else name


@dataclass(frozen=True)
class Species:
    """One particle species (a phase) and the bulk properties that simulation and analysis need.

    All values SI: density in kg/m3, modulus in Pa, conductivities in S/m, capacity in mAh/g.
    ``sigma_e_S_per_m`` / ``sigma_i_S_per_m`` are 0 for a phase that does not conduct electrons/ions.
    Optional mechanics (defaults = none, so older snapshots load unchanged): ``surface_energy_J_per_m2``
    the (effective) surface energy gamma (J/m2; the process layer gives the engine the pair work of
    adhesion W = 2 sqrt(gamma_a gamma_b)), ``yield_pressure_Pa`` the limiting contact pressure of the
    Thornton–Ning law (Pa, 0 = elastic), ``softening_onset_K``/``melting_K`` (K, both or neither) the
    temperatures between which that yield pressure falls.
    """

    name: str
    role: str
    density_kg_per_m3: float
    youngs_modulus_Pa: float
    poisson_ratio: float
    sigma_e_S_per_m: float = 0.0
    sigma_i_S_per_m: float = 0.0
    specific_capacity_mAh_per_g: float = 0.0
    color: str = "#888888"
    surface_energy_J_per_m2: float = 0.0
    yield_pressure_Pa: float = 0.0
    softening_onset_K: float | None = None
    melting_K: float | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"Species {self.name!r}: role={self.role!r} is not one of {ROLES}")


@dataclass(frozen=True)
class ContactSet:
    """Pairwise contacts as reported by a simulation (optional; analysis can rebuild them).

    ``i``/``j`` index particles; ``overlap_m`` > 0 means interpenetration; ``contact_radius_m`` is the
    radius a of the contact disc; ``normal_force_N`` the magnitude of the normal force.
    """

    i: np.ndarray
    j: np.ndarray
    overlap_m: np.ndarray
    contact_radius_m: np.ndarray
    normal_force_N: np.ndarray


@dataclass
class Microstructure:
    """A particle microstructure of an electrode layer on its current collector.

    Parameters
    ----------
    positions_m : (N, 3) float64 centres in metres.
    radii_m : (N,) float64 radii in metres.
    species_id : (N,) int32 index into ``species``.
    species : tuple of `Species`.
    box_m : (3,) box lengths (Lx, Ly, Lz) in metres; Lz is the height of the simulated domain,
        not the electrode thickness (see `top_m`).
    periodic : which axes are periodic.
    ids : (N,) int64 persistent particle ids (default 0..N-1).
    velocities_m_per_s : (N, 3) (default zeros).
    contacts : optional `ContactSet` from the engine.
    bonds : optional dict of equal-length arrays (``i``, ``j`` and per-bond state such as
        ``length_m``, ``radius_m``, ``broken``), e.g. PTFE fibrils or solid binder bridges.
    fields : optional dict of per-particle arrays (N,) or (N, k), e.g. ``binder_volume_m3``.
    metadata : JSON-serialisable dict: stage, units, scalings used, config hash, ...
    time_s : simulated time of the snapshot.
    """

    positions_m: np.ndarray
    radii_m: np.ndarray
    species_id: np.ndarray
    species: tuple[Species, ...]
    box_m: np.ndarray
    periodic: tuple[bool, bool, bool] = (True, True, False)
    ids: np.ndarray | None = None
    velocities_m_per_s: np.ndarray | None = None
    contacts: ContactSet | None = None
    bonds: dict[str, np.ndarray] | None = None
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    time_s: float = 0.0

    def __post_init__(self) -> None:
        self.positions_m = np.ascontiguousarray(self.positions_m, dtype=np.float64).reshape(-1, 3)
        n = len(self.positions_m)
        self.radii_m = np.ascontiguousarray(self.radii_m, dtype=np.float64).reshape(n)
        self.species_id = np.ascontiguousarray(self.species_id, dtype=np.int32).reshape(n)
        self.box_m = np.asarray(self.box_m, dtype=np.float64).reshape(3)
        self.species = tuple(self.species)
        self.periodic = tuple(bool(p) for p in self.periodic)  # type: ignore[assignment]
        self.ids = np.arange(n, dtype=np.int64) if self.ids is None else np.asarray(self.ids, np.int64)
        if self.velocities_m_per_s is None:
            self.velocities_m_per_s = np.zeros((n, 3))
        self.velocities_m_per_s = np.asarray(self.velocities_m_per_s, np.float64).reshape(n, 3)
        if n and (self.species_id.min() < 0 or self.species_id.max() >= len(self.species)):
            raise ValueError("species_id refers to a species not in the species table")
        if np.any(self.radii_m <= 0):
            raise ValueError("all radii_m must be > 0")

    # ------------------------------------------------------------------ derived quantities
    @property
    def n(self) -> int:
        """Number of particles."""
        return len(self.radii_m)

    @property
    def volumes_m3(self) -> np.ndarray:
        """Sphere volumes (m3)."""
        return 4.0 / 3.0 * np.pi * self.radii_m**3

    @property
    def densities_kg_per_m3(self) -> np.ndarray:
        """Per-particle bulk density (kg/m3)."""
        return np.array([s.density_kg_per_m3 for s in self.species])[self.species_id]

    @property
    def masses_kg(self) -> np.ndarray:
        """Per-particle mass (kg)."""
        return self.volumes_m3 * self.densities_kg_per_m3

    def species_index(self, name: str) -> int:
        """Index of the species called ``name``."""
        for k, s in enumerate(self.species):
            if s.name == name:
                return k
        raise KeyError(f"no species {name!r}; have {[s.name for s in self.species]}")

    def role_mask(self, role: str) -> np.ndarray:
        """Boolean mask of particles whose species has this role."""
        ids = [k for k, s in enumerate(self.species) if s.role == role]
        return np.isin(self.species_id, ids)

    def top_m(self) -> float:
        """Height of the electrode top surface (m).

        A process that knows the top (a calender plate, a drying front) records it as
        ``metadata['top_z_m']``; otherwise the highest particle surface is used.
        """
        if "top_z_m" in self.metadata:
            return float(self.metadata["top_z_m"])
        return float(np.max(self.positions_m[:, 2] + self.radii_m)) if self.n else 0.0

    def with_(self, **changes: Any) -> Microstructure:
        """A copy with some attributes replaced (metadata is merged, not replaced)."""
        if "metadata" in changes:
            changes["metadata"] = {**self.metadata, **changes["metadata"]}
        return replace(self, **changes)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the snapshot as a compressed ``.npz`` and return its path."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        arrays: dict[str, Any] = {
            "format_version": np.array(FORMAT_VERSION),
            "positions_m": self.positions_m,
            "radii_m": self.radii_m,
            "species_id": self.species_id,
            "box_m": self.box_m,
            "periodic": np.array(self.periodic),
            "ids": self.ids,
            "velocities_m_per_s": self.velocities_m_per_s,
            "time_s": np.array(self.time_s),
            "species_json": np.array(json.dumps([asdict(s) for s in self.species])),
            "metadata_json": np.array(json.dumps(self.metadata, default=_json_default)),
        }
        if self.contacts is not None:
            for f in fields(ContactSet):
                arrays[f"contacts__{f.name}"] = getattr(self.contacts, f.name)
        for k, v in (self.bonds or {}).items():
            arrays[f"bonds__{k}"] = v
        for k, v in self.fields.items():
            arrays[f"fields__{k}"] = v
        path.parent.mkdir(parents=True, exist_ok=True)
        # Atomic: a write cut short (disk full, killed) leaves the previous file as it was, so a run's
        # checkpoint.npz always holds a complete stage.
        tmp = path.with_name(path.name + ".tmp.npz")
        try:
            np.savez_compressed(tmp, **arrays)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> Microstructure:
        """Read a snapshot written by `save`; `SnapshotError` (one line naming the file and what is
        wrong) when the file is missing, is no ``.npz`` archive, is truncated or lacks snapshot arrays."""
        path = Path(path)
        if not path.exists():
            raise SnapshotError(path, "no such file")
        if not path.is_file():
            raise SnapshotError(path, "not a file")
        if path.stat().st_size == 0:
            raise SnapshotError(path, "empty file")
        # np.load is handed an open file rather than the path: given a path, it leaks the file it
        # opened when the archive turns out to be corrupt.
        with path.open("rb") as fh:
            try:
                z = np.load(fh, allow_pickle=False)
            except (zipfile.BadZipFile, EOFError) as e:
                raise SnapshotError(path, f"truncated or corrupt .npz archive ({_one_line(e)})") from e
            except (OSError, ValueError) as e:
                # np.load takes anything without the zip or .npy magic for a pickle, which it refuses
                # with a message about pickles that would mislead here.
                raise SnapshotError(path, "not a NumPy .npz archive (no zip header)") from e
            if not hasattr(z, "files"):  # a bare .npy array
                raise SnapshotError(path, "a single .npy array, not an .npz snapshot")
            try:
                with z:
                    return cls._from_npz(z, path)
            except SnapshotError:
                raise
            except KeyError as e:
                # NpzFile says "NAME is not a file in the archive".
                missing = str(e.args[0] if e.args else e).split(" is not a file")[0]
                raise SnapshotError(path, f"not an electrodem snapshot (no array {missing!r})") from e
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                raise SnapshotError(path, f"truncated or corrupt .npz archive ({_one_line(e)})") from e
            except (ValueError, TypeError, IndexError) as e:
                raise SnapshotError(path, f"inconsistent snapshot contents ({_one_line(e)})") from e

    @classmethod
    def _from_npz(cls, z: Any, path: Path) -> Microstructure:
        """The snapshot held by an open ``.npz`` archive ``z`` (read from ``path``)."""
        version = int(z["format_version"])
        if version > FORMAT_VERSION:
            raise SnapshotError(path, f"snapshot format {version} is newer than this code reads "
                                      f"({FORMAT_VERSION})")
        species = tuple(Species(**d) for d in json.loads(str(z["species_json"])))
        contacts = None
        if "contacts__i" in z.files:
            contacts = ContactSet(**{f.name: z[f"contacts__{f.name}"] for f in fields(ContactSet)})
        bonds = {k[len("bonds__"):]: z[k] for k in z.files if k.startswith("bonds__")} or None
        extra = {k[len("fields__"):]: z[k] for k in z.files if k.startswith("fields__")}
        return cls(
            positions_m=z["positions_m"],
            radii_m=z["radii_m"],
            species_id=z["species_id"],
            species=species,
            box_m=z["box_m"],
            periodic=tuple(bool(b) for b in z["periodic"]),
            ids=z["ids"],
            velocities_m_per_s=z["velocities_m_per_s"],
            contacts=contacts,
            bonds=bonds,
            fields=extra,
            metadata=json.loads(str(z["metadata_json"])),
            time_s=float(z["time_s"]),
        )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"metadata value of type {type(o).__name__} is not JSON-serialisable")


def bonds_from_state(state: dict[str, Any]) -> dict[str, np.ndarray]:
    """A `Microstructure.bonds` table from a bond model's report (e.g.
    `electrodem.engine.bonds.Bonds.state`): every array copied, after checking that ``i`` and ``j``
    are present and that all arrays have one row per bond."""
    if "i" not in state or "j" not in state:
        raise ValueError("a bond table needs the particle index arrays 'i' and 'j'")
    out = {k: np.asarray(v).copy() for k, v in state.items()}
    n = len(out["i"])
    bad = [k for k, v in out.items() if v.ndim == 0 or len(v) != n]
    if bad:
        raise ValueError(f"bond arrays {bad} do not have one row per bond ({n})")
    return out
