"""Write my_data.npz: two interleaved spirals, 2,000 points, labels 0 and 1. Keys: x [n, 2] float,
y [n] int; no x_test/y_test, so dlcore holds out data.test_fraction of it (stratified)."""
import numpy as np

rng = np.random.default_rng(0)
t = rng.uniform(0.25, 3.0, 2000) * 2 * np.pi
label = rng.integers(0, 2, 2000)
r = t / (2 * np.pi)
x = np.stack([r * np.cos(t + np.pi * label), r * np.sin(t + np.pi * label)], 1)
x += rng.normal(scale=0.05, size=x.shape)
np.savez("my_data.npz", x=x.astype(np.float32), y=label)
