"""Shared fixtures (the shipped example configs) and the hypothesis profile."""

from pathlib import Path

import pytest
from hypothesis import settings as _hypothesis_settings

from model.config import load_config

# Property tests check results, not speed: no per-example deadline, so a CI machine
# loaded by Verilator and compiler runs cannot fail them on time (the default is 200 ms).
_hypothesis_settings.register_profile("l4lb", deadline=None)
_hypothesis_settings.load_profile("l4lb")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def default_cfg():
    return load_config(EXAMPLES / "default.toml")


@pytest.fixture(scope="session")
def small_cfg():
    return load_config(EXAMPLES / "small.toml")
