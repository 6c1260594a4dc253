"""Current-collector foils (the z = 0 wall): bulk and surface properties, SI, with sources.

Only what the contact law needs: the foil is a rigid plane for the engine, so its density does not
enter; its modulus enters E* of particle–foil contacts (softened like the particles' during settling);
its surface energy gamma gives the particle–foil work of adhesion W = 2 sqrt(gamma_p gamma_foil).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CollectorFoil:
    """A current-collector foil: density (kg/m3), Young's modulus (Pa), Poisson ratio, effective
    surface energy gamma (J/m2) and a source per value."""

    name: str
    density_kg_per_m3: float
    youngs_modulus_Pa: float
    poisson_ratio: float
    surface_energy_J_per_m2: float
    sources: dict[str, str] = field(default_factory=dict)


_OXIDE_GAMMA = (
    "assumed order of magnitude: a rolled foil carries a native oxide and adsorbed contaminants whose "
    "surface energy is ~0.04-0.05 J/m2 (contact-angle measurements on ambient metal surfaces, quoted from "
    "memory), far below the clean-metal ~1 J/m2; x ~0.5 for the foil's sub-um roughness: 0.02"
)

COLLECTORS: dict[str, CollectorFoil] = {
    "aluminium": CollectorFoil(
        name="aluminium",
        density_kg_per_m3=2700.0,
        youngs_modulus_Pa=70e9,
        poisson_ratio=0.33,
        surface_energy_J_per_m2=0.02,
        sources={
            "density_kg_per_m3": "aluminium 2.70 g/cm3 (handbook)",
            "youngs_modulus_Pa": "aluminium ~69-70 GPa, nu ~0.33 (handbook, e.g. ASM; 1xxx-series foil)",
            "poisson_ratio": "aluminium ~0.33 (handbook)",
            "surface_energy_J_per_m2": _OXIDE_GAMMA,
        },
    ),
    "copper": CollectorFoil(
        name="copper",
        density_kg_per_m3=8960.0,
        youngs_modulus_Pa=120e9,
        poisson_ratio=0.34,
        surface_energy_J_per_m2=0.02,
        sources={
            "density_kg_per_m3": "copper 8.96 g/cm3 (handbook)",
            "youngs_modulus_Pa": "copper ~110-130 GPa (handbook; rolled or deposited foil); 120 GPa taken",
            "poisson_ratio": "copper ~0.34 (handbook)",
            "surface_energy_J_per_m2": _OXIDE_GAMMA,
        },
    ),
}
"""Foils by name: aluminium (cathodes, and Na-ion anodes: Na does not alloy with Al) and copper
(graphite anodes of Li-ion cells)."""
