"""Run a benchmark once per Keras backend, each in its own process.

KERAS_BACKEND is fixed when Keras is imported, so `--backends all` re-runs the
benchmark script under each backend with `--json` and collects the one JSON
line each child prints last.
"""

import json
import os
import subprocess
import sys

BACKENDS = ("tensorflow", "jax", "torch")


def backend_names(spec):
    """'all' -> every backend; otherwise a comma list ('jax,torch')."""
    return list(BACKENDS) if spec == "all" else spec.split(",")


def run_per_backend(script, args, spec):
    """Run `python script *args --json` under each backend of `spec`; the parsed results.

    A backend whose process fails is reported on stderr and left out.
    """
    results = []
    for backend in backend_names(spec):
        cmd = [sys.executable, script, *args, "--json"]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode:
            print(f"{backend}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def run_for_backends_option(script, backends):
    """Results of re-running `script` (with this process's arguments, less
    `--backends`) once per backend named by its `--backends` value."""
    args = [a for a in sys.argv[1:] if not a.startswith("--backends") and a != backends]
    return run_per_backend(script, args, backends)
