"""Test setup: 8 fake CPU devices (set before JAX initialises), a compilation cache shared by the
test processes, and a private data cache."""
import os
import tempfile

# The RL deadlock guard (README: 'A deadlock guard'): a process-wide XLA flag, read when JAX's
# backend starts, so it is set before anything computes.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_cpu_enable_concurrency_optimized_scheduler=false").strip()

import jax  # noqa: E402

# Sharding tests need several devices; CPU can pretend. Must run before any JAX computation.
jax.config.update("jax_num_cpu_devices", 8)

# Tests build the same small programs again and again (every tiny MNIST-1D run compiles the same
# step): XLA's persistent compilation cache, shared by the pytest-xdist workers, compiles each once.
# DLCORE_TEST_JAX_CACHE="" turns it off.
_cache = os.environ.get("DLCORE_TEST_JAX_CACHE",
                        os.path.join(tempfile.gettempdir(), f"dlcore-test-jax-cache-{os.getuid()}"))
if _cache:
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory):
    """Generated data sets go to a throwaway folder, generated once per test session."""
    os.environ["DLCORE_CACHE"] = str(tmp_path_factory.mktemp("dlcore-cache"))
    yield
