"""attnlife.analysis: phases, head types, cycles, correlations, trajectory embedding, series
integrity, the claims check and the theory runs' tables; pure functions over arrays and DataFrames
(DataFrames in, DataFrames out). `attnlife.explain.analyze_run` reads a run through the store,
calls them and writes RUN/analysis/."""
