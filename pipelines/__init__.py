"""What runs over whole runs: the command line, the GLUE recipe, sweeps, grids and their tables, inspect, and the offline demo."""
