"""asv benchmarks of seqbench (asv.conf.json: benchmark_dir). See common.py for the shared setup."""
