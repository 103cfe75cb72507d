"""attnlife.spectra: per-head W_QK / W_OV weight statistics over checkpoint series.

Modules: `stats`, `stats_elements`, `trajectories` (pure math); `layouts` (per-architecture
weight extraction); `sources` (run dirs, nanoGPT ckpt.pt, HF revisions); `analyse` (one
checkpoint); `sweep` (parallel, resumable series -> OUT/spectra/). See docs/spectra.md.
"""
