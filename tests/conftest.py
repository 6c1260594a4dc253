"""Shared test fixtures: repository paths and a loaded materials library."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")

REPO = Path(__file__).resolve().parents[1]


def _config_dir() -> Path:
    from electrodem.cli import config_dir

    return config_dir()


@pytest.fixture(scope="session")
def config_dir() -> Path:
    return _config_dir()


@pytest.fixture(scope="session")
def library(config_dir):
    from electrodem.materials.library import load_library

    raw = {p.stem: yaml.safe_load(p.read_text()) for p in (config_dir / "material").glob("*.yaml")}
    return load_library(raw)
