"""The worker's allocator policy (agentflux.memory): Arrow's compiled-in default pool, which the
Parquet reader and writer use, is jemalloc in a worker process."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def test_the_worker_command_chooses_jemalloc_before_pyarrow_loads():
    # the CLI module itself must not import pyarrow: cmd_worker tunes memory first
    assert _run("import sys, agentflux.cli; print('pyarrow' in sys.modules)") == "False"
    out = _run("from agentflux.memory import tune_memory; tune_memory(); "
               "import pyarrow as pa, pyarrow.parquet as pq, io; "
               "pq.write_table(pa.table({'a': list(range(100_000))}), io.BytesIO()); "
               "print(pa.default_memory_pool().backend_name, pa.mimalloc_memory_pool().max_memory())")
    # the Parquet writer allocated nothing through mimalloc (with pyarrow.set_memory_pool
    # alone it takes ~8 MB there for this table)
    assert out == "jemalloc 0"


def test_a_pool_chosen_by_the_user_is_kept():
    out = subprocess.run(
        [sys.executable, "-c", "from agentflux.memory import tune_memory; tune_memory(); "
         "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"],
        env={**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"}, capture_output=True,
        text=True, check=True, timeout=60).stdout.strip()
    assert out == "system"
