"""Speed benchmarks (not part of the vitlib package): run them from the repository root as
`python -m bench.<script>`; see bench/README.md."""
