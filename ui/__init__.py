"""The application layer: the services (services/: settings, the per-process context, training, doctor, ...) and
the three front ends that use them (cli/, the Streamlit app in web/, the HTTP API in api/)."""

import os

# Before anything loads torch (whose OpenMP runtime reads this once, at load): idle OpenMP threads sleep instead
# of spinning. With spinning threads, two embedding processes on one machine (the worker beside the app, two
# ingests) steal each other's cores; measured on 2 cores with the torch runtime, two ingests at once reached 63%
# of one alone with spinning and 134% with passive waiting (benchmarks/bench_concurrency.py). A value the user
# set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
