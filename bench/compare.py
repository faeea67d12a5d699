#!/usr/bin/env python3
"""Run our Google Benchmark programs and the PyTorch/fastai peer with one thread, print a table.

    python3 bench/compare.py [--build build] [--reps 3] [--filter REGEX] [--python ../refenv/bin/python]

Both sides run with OMP_NUM_THREADS=1 (torch.set_num_threads(1) in the peer), in the same
session. Times are medians over --reps repetitions. The ratio is PyTorch time / our time
(> 1: we are faster). On a shared machine wall time is noisy; the table shows process CPU time,
which for one thread is the compute time, and wall time next to it.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ours(build, reps, flt):
    res = {}
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for prog in ("bench_lstm", "bench_lm", "bench_predict"):
        exe = os.path.join(build, prog)
        if not os.path.exists(exe):
            print(f"missing {exe}: build it with cmake --build {build} --target {prog}", file=sys.stderr)
            continue
        out = subprocess.run([exe, f"--benchmark_filter={flt}", f"--benchmark_repetitions={reps}",
                              "--benchmark_min_time=0.01", "--benchmark_format=json"],
                             env=env, check=True, capture_output=True, text=True).stdout
        runs = {}
        try:
            benchmarks = json.loads(out)["benchmarks"]
        except (ValueError, KeyError):  # no case of this program matches --filter
            continue
        for b in benchmarks:
            if b.get("run_type") != "iteration":
                continue
            name = b["run_name"].split("/min_time")[0].split("/real_time")[0]
            scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b["time_unit"]]
            runs.setdefault(name, {"cpu": [], "wall": []})
            runs[name]["cpu"].append(b["cpu_time"] * scale)
            runs[name]["wall"].append(b["real_time"] * scale)
        for k, v in runs.items():
            res[k] = {"cpu_ms": statistics.median(v["cpu"]), "wall_ms": statistics.median(v["wall"])}
    return res


def peer(python, reps, flt):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([python, os.path.join(ROOT, "tools/reference/bench_torch.py"),
                          "--reps", str(reps), "--filter", flt],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--filter", default=".")
    ap.add_argument("--python", default="../refenv/bin/python")
    a = ap.parse_args()
    o = ours(a.build, a.reps, a.filter)
    p = peer(a.python, a.reps, a.filter)
    print(f"| case | ours CPU ms (wall) | PyTorch CPU ms (wall) | ratio (CPU) |")
    print("| --- | --- | --- | --- |")
    for k in sorted(set(o) | set(p)):
        # a "/fp16" case of ours is set against the peer's float32 case of the same name
        oo, pp = o.get(k), p.get(k, p.get(k[:-len("/fp16")]) if k.endswith("/fp16") else None)
        fo = f"{oo['cpu_ms']:.1f} ({oo['wall_ms']:.1f})" if oo else "-"
        fp = f"{pp['cpu_ms']:.1f} ({pp['wall_ms']:.1f})" if pp else "-"
        r = f"{pp['cpu_ms'] / oo['cpu_ms']:.2f}x" if oo and pp else "-"
        print(f"| {k} | {fo} | {fp} | {r} |")


if __name__ == "__main__":
    main()
