"""Test setup: 8 fake CPU devices (set before JAX initialises) and a private data cache."""
import os

import jax

# Sharding tests need several devices; CPU can pretend. Must run before any JAX computation.
jax.config.update("jax_num_cpu_devices", 8)

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory):
    """Generated data sets go to a throwaway folder, generated once per test session."""
    os.environ["DLCORE_CACHE"] = str(tmp_path_factory.mktemp("dlcore-cache"))
    yield
