"""Static description of what is simulated: materials, the contact law and its per-pair table.

A contact law is assembled from named sub-models (LAMMPS-granular style):

* ``normal``: ``hertz`` — F = 4/3 E* sqrt(R*) d^1.5; ``thornton_ning`` — Hertz until the peak contact
  pressure reaches the pair's yield pressure p_y, then linear (perfectly plastic) loading and Hertzian
  unloading about a plastic overlap with an enlarged radius (Thornton & Ning 1998, see
  `electrodem.engine.contact.thornton_ning_normal`); leaves permanent overlap and spring-back.
* ``damping``: ``restitution`` (viscous, Tsuji form, calibrated so the restitution coefficient of a
  head-on Hertz collision equals the material's; see `electrodem.engine.damping`) or ``none``.
* ``tangential``: ``mindlin`` (no-slip Mindlin spring k_t = 8 G* a with history and Coulomb limit
  mu F_n) or ``none``.
* ``rolling``: ``none``, ``constant`` (constant directional torque mu_r R* F_n opposing the relative
  rolling) or ``epsd`` (elastic–plastic spring-dashpot, Ai et al. 2011: spring k_r = 2.25 S_n mu_r^2 R*^2,
  capped at mu_r R* F_n, plus a dashpot of damping ratio 0.3 while below the cap).
* ``cohesion``: ``none``, ``jkr`` (Johnson–Kendall–Roberts adhesion with work of adhesion W per pair;
  pull-off force 3/2 pi W R*) or ``vdw`` (van der Waals attraction A R* / (6 D^2) of Hamaker constant A,
  gap D floored at ``vdw_min_separation_m``, zero beyond ``vdw_cutoff_m``). The two are exclusive:
  JKR's W already is the adhesion that the Hamaker force integrates to (W = A / (24 pi D_0^2)), so
  adding both would count it twice. See `electrodem.engine.cohesion`.

Pair properties follow mixing rules (E*, G* from both moduli; restitution, friction and rolling
friction as geometric means) and can be overridden per material pair.

Yield pressure of a pair (Thornton–Ning only): the contact pressure is the same on both bodies, so the
body that yields first limits it: p_y(pair) = the smaller p_y of the plastic members (a material with
``yield_pressure_Pa`` None or 0 is elastic and never limits it), 0 (elastic) if neither is plastic.
Temperature softening: each material's p_y is multiplied by `softening_factor` (1 up to
``softening_onset_K``, falling linearly to `SOFTENING_FLOOR` at ``melting_K`` and staying there):
polymer binders (PVDF melts near 450 K, PTFE near 600 K) lose their yield strength toward the melt,
roughly linearly in temperature for semicrystalline polymers; the small floor keeps a molten binder
from offering zero resistance (which would make every contact perfectly plastic at zero force). A
`PairOverride` yield pressure replaces the pair's reference value and is softened by the smaller
factor of the two materials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from electrodem.config import ConfigError
from electrodem.engine.damping import damping_for_restitution

NORMAL_MODELS = ("hertz", "thornton_ning")
DAMPING_MODELS = ("restitution", "none")
TANGENTIAL_MODELS = ("mindlin", "none")
ROLLING_MODELS = ("none", "constant", "epsd")
COHESION_MODELS = ("none", "jkr", "vdw")

# Columns of the pair-property table handed to the kernels: E* (Pa), G* (Pa), damping factor eta,
# friction mu, rolling friction mu_r, plastic yield (limiting contact) pressure p_y (Pa, 0 = elastic),
# surface energy W (J/m^2, 0 = no JKR cohesion), Hamaker constant A (J, 0 = no van der Waals), then
# the van der Waals minimum separation D_0 and cut-off gap (m) of the pair.
P_ESTAR, P_GSTAR, P_ETA, P_MU, P_MUR, P_PY, P_W, P_HAM = range(8)
P_D0, P_DCUT = 8, 9
N_PAIR_PROPS = 10

SOFTENING_FLOOR = 0.02
"""Fraction of the yield pressure left at and above the melting temperature."""
REFERENCE_TEMPERATURE_K = 293.15


@dataclass(frozen=True)
class Material:
    """Bulk and surface properties of one particle or wall material (SI).

    ``restitution`` in (0, 1], ``friction`` (Coulomb mu) >= 0, ``rolling_friction`` (mu_r,
    dimensionless, torque = mu_r R* F_n) >= 0. ``yield_pressure_Pa``: limiting contact pressure of the
    Thornton–Ning law (Pa; None or 0 = elastic). ``softening_onset_K`` < ``melting_K`` (K, both or
    neither; None = no softening): the yield pressure falls linearly between them (see module
    docstring).
    """

    name: str
    density_kg_per_m3: float
    youngs_modulus_Pa: float
    poisson_ratio: float
    restitution: float = 0.5
    friction: float = 0.5
    rolling_friction: float = 0.0
    yield_pressure_Pa: float | None = None
    softening_onset_K: float | None = None
    melting_K: float | None = None
    surface_energy_J_per_m2: float = 0.0
    hamaker_J: float = 0.0

    def __post_init__(self) -> None:
        key = f"material[{self.name}]"
        if not self.density_kg_per_m3 > 0:
            raise ConfigError(f"{key}.density_kg_per_m3", self.density_kg_per_m3, "> 0")
        if not self.youngs_modulus_Pa > 0:
            raise ConfigError(f"{key}.youngs_modulus_Pa", self.youngs_modulus_Pa, "> 0")
        if not -1.0 < self.poisson_ratio < 0.5:
            raise ConfigError(f"{key}.poisson_ratio", self.poisson_ratio, "in (-1, 0.5)")
        if not 0.0 < self.restitution <= 1.0:
            raise ConfigError(f"{key}.restitution", self.restitution, "in (0, 1]")
        if not self.friction >= 0:
            raise ConfigError(f"{key}.friction", self.friction, ">= 0")
        if not self.rolling_friction >= 0:
            raise ConfigError(f"{key}.rolling_friction", self.rolling_friction, ">= 0")
        if not self.surface_energy_J_per_m2 >= 0:
            raise ConfigError(f"{key}.surface_energy_J_per_m2", self.surface_energy_J_per_m2, ">= 0 (J/m^2)")
        if not self.hamaker_J >= 0:
            raise ConfigError(f"{key}.hamaker_J", self.hamaker_J, ">= 0 (J)")
        if self.yield_pressure_Pa is not None and not (
            self.yield_pressure_Pa >= 0 and math.isfinite(self.yield_pressure_Pa)
        ):
            raise ConfigError(f"{key}.yield_pressure_Pa", self.yield_pressure_Pa, "null or finite >= 0 (Pa)")
        if (self.softening_onset_K is None) != (self.melting_K is None):
            raise ConfigError(
                f"{key}.softening_onset_K/melting_K",
                (self.softening_onset_K, self.melting_K),
                "both null (no softening) or both given (K)",
            )
        if self.melting_K is not None and not 0 < self.softening_onset_K < self.melting_K:  # type: ignore[operator]
            raise ConfigError(
                f"{key}.softening_onset_K/melting_K",
                (self.softening_onset_K, self.melting_K),
                "0 < softening_onset_K < melting_K (K)",
            )

    def softening_factor(self, temperature_K: float) -> float:
        """Multiplier of the yield pressure at ``temperature_K`` (K): 1 up to the onset, linear down to
        `SOFTENING_FLOOR` at the melting temperature, the floor above it; 1 without softening."""
        if self.melting_K is None or self.softening_onset_K is None:
            return 1.0
        t0, t1 = self.softening_onset_K, self.melting_K
        frac = min(max((temperature_K - t0) / (t1 - t0), 0.0), 1.0)
        return 1.0 - (1.0 - SOFTENING_FLOOR) * frac

    def yield_pressure_at_Pa(self, temperature_K: float) -> float:
        """Softened yield pressure (Pa) at ``temperature_K``; 0 for an elastic material."""
        if not self.yield_pressure_Pa:
            return 0.0
        return float(self.yield_pressure_Pa) * self.softening_factor(temperature_K)

    @property
    def shear_modulus_Pa(self) -> float:
        """G = E / (2 (1 + nu)) in Pa."""
        return self.youngs_modulus_Pa / (2.0 * (1.0 + self.poisson_ratio))


@dataclass(frozen=True)
class PairOverride:
    """Surface properties of one material pair that replace the mixing rule (None keeps the mix).

    ``surface_energy_J_per_m2`` is the pair's work of adhesion W (J/m^2) and ``hamaker_J`` its Hamaker
    constant A (J); their mixing rules are geometric means."""

    restitution: float | None = None
    friction: float | None = None
    rolling_friction: float | None = None
    surface_energy_J_per_m2: float | None = None
    hamaker_J: float | None = None
    yield_pressure_Pa: float | None = None
    """Reference (unsoftened) yield pressure of the pair (Pa, 0 = elastic); Thornton–Ning only."""

    def __post_init__(self) -> None:
        if self.yield_pressure_Pa is not None and not (
            self.yield_pressure_Pa >= 0 and math.isfinite(self.yield_pressure_Pa)
        ):
            raise ConfigError(
                "pair_override.yield_pressure_Pa", self.yield_pressure_Pa, "null or finite >= 0 (Pa)"
            )


@dataclass(frozen=True)
class ContactModel:
    """Named sub-models of the contact law (see module docstring for the choices)."""

    normal: str = "hertz"
    damping: str = "restitution"
    tangential: str = "mindlin"
    rolling: str = "none"
    cohesion: str = "none"
    vdw_min_separation_m: float = 0.4e-9
    vdw_cutoff_m: float = 100e-9

    def __post_init__(self) -> None:
        if not self.vdw_min_separation_m > 0:
            raise ConfigError("contact.vdw_min_separation_m", self.vdw_min_separation_m, "> 0 (m)")
        if not self.vdw_cutoff_m > self.vdw_min_separation_m:
            raise ConfigError(
                "contact.vdw_cutoff_m",
                self.vdw_cutoff_m,
                f"> vdw_min_separation_m = {self.vdw_min_separation_m} m",
            )
        for key, value, allowed in (
            ("normal", self.normal, NORMAL_MODELS),
            ("damping", self.damping, DAMPING_MODELS),
            ("tangential", self.tangential, TANGENTIAL_MODELS),
            ("rolling", self.rolling, ROLLING_MODELS),
            ("cohesion", self.cohesion, COHESION_MODELS),
        ):
            if value not in allowed:
                raise ConfigError(f"contact.{key}", value, f"one of {allowed}")

    @property
    def rolling_code(self) -> int:
        """0 none, 1 constant, 2 epsd (compile-time switch of the kernels)."""
        return ROLLING_MODELS.index(self.rolling)

    @property
    def cohesion_code(self) -> int:
        """0 none, 1 jkr, 2 vdw (compile-time switch of the kernels)."""
        return COHESION_MODELS.index(self.cohesion)


@dataclass
class MaterialTable:
    """Materials by index plus pair overrides; builds the (n, n, N_PAIR_PROPS) pair table."""

    materials: tuple[Material, ...]
    overrides: dict[tuple[str, str], PairOverride] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.materials:
            raise ConfigError("materials", [], "at least one Material")
        names = [m.name for m in self.materials]
        if len(set(names)) != len(names):
            raise ConfigError("materials", names, "unique names")
        for a, b in self.overrides:
            for nm in (a, b):
                if nm not in names:
                    raise ConfigError("pair_overrides", (a, b), f"material names among {names}")

    def index(self, name: str) -> int:
        """Index of the material called ``name``."""
        for k, m in enumerate(self.materials):
            if m.name == name:
                return k
        raise ConfigError("material", name, f"one of {[m.name for m in self.materials]}")

    def pair_values(self, a: int, b: int) -> tuple[float, float, float]:
        """(restitution, friction, rolling_friction) of materials a, b after mixing and overrides."""
        ma, mb = self.materials[a], self.materials[b]
        e = math.sqrt(ma.restitution * mb.restitution)
        mu = math.sqrt(ma.friction * mb.friction)
        mur = math.sqrt(ma.rolling_friction * mb.rolling_friction)
        ov = self.overrides.get((ma.name, mb.name)) or self.overrides.get((mb.name, ma.name))
        if ov is not None:
            e = ov.restitution if ov.restitution is not None else e
            mu = ov.friction if ov.friction is not None else mu
            mur = ov.rolling_friction if ov.rolling_friction is not None else mur
        return e, mu, mur

    def pair_yield_pressure_Pa(self, a: int, b: int, temperature_K: float = REFERENCE_TEMPERATURE_K) -> float:
        """Yield pressure (Pa, 0 = elastic) of materials a, b at ``temperature_K`` (rule in the module
        docstring)."""
        ma, mb = self.materials[a], self.materials[b]
        ov = self.overrides.get((ma.name, mb.name)) or self.overrides.get((mb.name, ma.name))
        if ov is not None and ov.yield_pressure_Pa is not None:
            factor = min(ma.softening_factor(temperature_K), mb.softening_factor(temperature_K))
            return float(ov.yield_pressure_Pa) * factor
        values = [m.yield_pressure_at_Pa(temperature_K) for m in (ma, mb) if m.yield_pressure_Pa]
        return min(values) if values else 0.0

    def pair_cohesion(self, a: int, b: int) -> tuple[float, float]:
        """(work of adhesion W (J/m^2), Hamaker constant A (J)) of materials a, b: geometric means
        unless overridden."""
        ma, mb = self.materials[a], self.materials[b]
        w = math.sqrt(ma.surface_energy_J_per_m2 * mb.surface_energy_J_per_m2)
        ham = math.sqrt(ma.hamaker_J * mb.hamaker_J)
        ov = self.overrides.get((ma.name, mb.name)) or self.overrides.get((mb.name, ma.name))
        if ov is not None:
            w = ov.surface_energy_J_per_m2 if ov.surface_energy_J_per_m2 is not None else w
            ham = ov.hamaker_J if ov.hamaker_J is not None else ham
        return w, ham

    def pair_table(self, contact: ContactModel, temperature_K: float = REFERENCE_TEMPERATURE_K) -> np.ndarray:
        """(n, n, N_PAIR_PROPS) float64 table: E* (Pa), G* (Pa), eta, mu, mu_r, yield pressure p_y at
        ``temperature_K`` (Pa; filled only for the Thornton–Ning law), W (J/m^2, with ``jkr``), A (J,
        with ``vdw``), D_0 and the vdW cut-off gap (m, 0 without ``vdw``)."""
        n = len(self.materials)
        table = np.zeros((n, n, N_PAIR_PROPS))
        for a in range(n):
            for b in range(n):
                ma, mb = self.materials[a], self.materials[b]
                e, mu, mur = self.pair_values(a, b)
                table[a, b, P_ESTAR] = 1.0 / (
                    (1 - ma.poisson_ratio**2) / ma.youngs_modulus_Pa
                    + (1 - mb.poisson_ratio**2) / mb.youngs_modulus_Pa
                )
                table[a, b, P_GSTAR] = 1.0 / (
                    (2 - ma.poisson_ratio) / ma.shear_modulus_Pa
                    + (2 - mb.poisson_ratio) / mb.shear_modulus_Pa
                )
                table[a, b, P_ETA] = 0.0 if contact.damping == "none" else damping_for_restitution(e)
                table[a, b, P_MU] = 0.0 if contact.tangential == "none" else mu
                table[a, b, P_MUR] = 0.0 if contact.rolling == "none" else mur
                if contact.normal == "thornton_ning":
                    table[a, b, P_PY] = self.pair_yield_pressure_Pa(a, b, temperature_K)
                w, ham = self.pair_cohesion(a, b)
                table[a, b, P_W] = w if contact.cohesion == "jkr" else 0.0
                table[a, b, P_HAM] = ham if contact.cohesion == "vdw" else 0.0
                table[a, b, P_D0] = contact.vdw_min_separation_m
                table[a, b, P_DCUT] = contact.vdw_cutoff_m if contact.cohesion == "vdw" else 0.0
        return table
