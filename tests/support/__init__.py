"""Test support shared by tests and benchmarks: synthetic run directories, a headless browser."""
