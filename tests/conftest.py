"""Test setup: 8 fake CPU devices (set before JAX initialises) and a private data cache."""
import os

# The RL deadlock guard (README: 'A deadlock guard'): a process-wide XLA flag, read when JAX's
# backend starts, so it is set before anything computes.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_cpu_enable_concurrency_optimized_scheduler=false").strip()

import jax  # noqa: E402

# Sharding tests need several devices; CPU can pretend. Must run before any JAX computation.
jax.config.update("jax_num_cpu_devices", 8)

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory):
    """Generated data sets go to a throwaway folder, generated once per test session."""
    os.environ["DLCORE_CACHE"] = str(tmp_path_factory.mktemp("dlcore-cache"))
    yield
