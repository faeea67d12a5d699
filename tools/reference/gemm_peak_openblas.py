#!/usr/bin/env python3
"""The peer's GEMM ceiling on this machine: numpy's float32 matmul (OpenBLAS) at n = 2048,
the same shape as bench_lstm's sgemm_peak/2048, median of 7 timed runs after one warm-up.

    OMP_NUM_THREADS=T OPENBLAS_NUM_THREADS=T ../refenv/bin/python tools/reference/gemm_peak_openblas.py

Prints GFLOP/s and the BLAS numpy uses (docs/performance.md, "The arithmetic ceiling").
"""
import os
import statistics
import time

import numpy as np


def main():
    n = 2048
    rng = np.random.default_rng(2)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    print(f"numpy {np.__version__} ({blas.get('name', '?')} {blas.get('version', '')}), "
          f"{os.environ.get('OPENBLAS_NUM_THREADS', '?')} thread(s): "
          f"{2 * n ** 3 / statistics.median(times) * 1e-9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
