"""Scale-out executors on an existing distributed engine (Ray). The local loop in `bench.runner` stays the default."""
