"""dlcore: deep-learning algorithms as pure JAX functions, and one small host loop to run them."""
__version__ = "0.1.0"
