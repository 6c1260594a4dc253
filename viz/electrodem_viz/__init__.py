"""Renders and plots of electrodem run directories (PyVista, matplotlib)."""
