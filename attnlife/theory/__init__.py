"""One-layer attention theory experiments, written as ordinary attnlife run directories.

- `scan_snap_data`, `scan_snap`, `scan_snap_runs`: scan and snap (Tian et al. 2023): sequence
  classes, the reparameterised (Y, Z) SGD dynamics batched over seeds and rate grids, the plain
  nn.Module form, and the single-run / sweep experiments.
- `markov_data`, `markov`: focus-dilution on first-order Markov chains (or a char text): a
  one-layer transformer trained with a small learning rate and its stage signatures.
"""
