"""Shared fixtures: the shipped example configs."""

from pathlib import Path

import pytest

from model.config import load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def default_cfg():
    return load_config(EXAMPLES / "default.toml")


@pytest.fixture(scope="session")
def small_cfg():
    return load_config(EXAMPLES / "small.toml")
