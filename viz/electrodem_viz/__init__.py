"""Renders and plots of electrodem run directories (PyVista, matplotlib).

Python API (all take a `electrodem.io.snapshot.Microstructure`; lengths SI in, µm on the axes):

* `render_particles` — 3D spheres coloured by species (PyVista, off-screen PNG)
* `render_section` — exact cross-section by a vertical plane (matplotlib PNG)
* `render_stages` — side-by-side sections of several process stages
* `plot_profiles` — through-thickness composition profile; returns the `CompositionProfile`
* `slab_volume_fractions` — exact sphere–slab volume fractions (pure NumPy, reusable by analysis)
* `render_run` — everything for a run directory (what ``electrodem-viz RUN_DIR`` calls)
"""

from electrodem.analysis.profiles import CompositionProfile, composition_profile, slab_volume_fractions

from .colors import FALLBACK_PALETTE, species_colors
from .plots import plot_profiles, render_section, render_stages
from .render import render_particles
from .run import render_run
from .section import Section, section_discs

__all__ = [
    "FALLBACK_PALETTE",
    "CompositionProfile",
    "Section",
    "composition_profile",
    "plot_profiles",
    "render_particles",
    "render_run",
    "render_section",
    "render_stages",
    "section_discs",
    "slab_volume_fractions",
    "species_colors",
]
