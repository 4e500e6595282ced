"""`python -m minigrad.cli ...` is `minigrad ...` (e.g. `mpiexec -n 2 python -m mpi4py -m minigrad.cli train`)."""
from . import main

main(prog_name="minigrad")
