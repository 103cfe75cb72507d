"""attnlife.spectra: per-head W_QK / W_OV weight statistics over checkpoint series.

Modules: `stats`, `stats_elements`, `trajectories` (pure math); `layouts` (per-architecture
weight extraction); `analyse` (one checkpoint of a series of `attnlife.series`: run dirs,
nanoGPT ckpt.pt, HF revisions); `sweep` (parallel, resumable series -> OUT/spectra/). See
docs/spectra.md.
"""
