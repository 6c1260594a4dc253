"""Input/output: the `Microstructure` snapshot (npz) and VTU/PVD export for ParaView."""

from electrodem.io.snapshot import ContactSet, Microstructure, Species

__all__ = ["ContactSet", "Microstructure", "Species"]
