#!/usr/bin/env python3
"""Run our Google Benchmark programs and the PyTorch/fastai peer with one and two threads; print a table.

    python3 bench/compare.py [--build build] [--reps 3] [--threads 1,2] [--filter REGEX]
                             [--python ../refenv/bin/python]

Both sides run with OMP_NUM_THREADS=N (torch.set_num_threads(N) in the peer), in the same
session, one thread count after the other. Times are medians over --reps repetitions.

Per row: ours, the peer, ratio = peer / ours (> 1: we are faster) and the fraction of the
measured GEMM peak that our time reaches (the case's FLOPs / our time / the GFLOP/s of
bench_lstm's sgemm_peak/2048 at the same thread count, measured in the same run).
With one thread the times compared are process CPU times (on a shared machine they are the
compute time; wall in parentheses); with several threads they are wall times (CPU time would
add the threads up).

The FLOPs counted are the matrix products only (2 per multiply-add): LSTM forward
2·bs·sl·4h·(in+h), forward+backward 3× that; fused LM softmax 6·n·V·E; LM step the three LSTMs
(fwd+bwd) and the softmax, 265 MFLOP per token (stage 1: 225); one 250-token document 250 × the
three LSTM forwards (40.5 MFLOP per token).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEAK_CASE = "sgemm_peak/2048"


def flops(case):
    """Matrix-product FLOPs of one iteration of `case` (None if unknown)."""
    m = re.match(r"lstm_(fwd|fwdbwd|infer)/(\d+)x(\d+)/b(\d+)x(\d+)", case)
    if m:
        inp, h, bs, sl = map(int, m.group(2, 3, 4, 5))
        f = 2.0 * bs * sl * 4 * h * (inp + h)
        return 3 * f if m.group(1) == "fwdbwd" else f
    m = re.match(r"lm_softmax_ce/V(\d+)xE(\d+)/n(\d+)", case)
    if m:
        v, e, n = map(int, m.groups())
        return 6.0 * n * v * e
    lstm_tok = 2.0 * 4 * 1152 * (400 + 1152) + 2.0 * 4 * 1152 * 2304 + 2.0 * 4 * 400 * (1152 + 400)
    softmax_tok = 6.0 * 60000 * 400
    m = re.match(r"lm_train_step(_stage1)?/V\d+/b(\d+)x(\d+)", case)
    if m:
        tok = int(m.group(2)) * int(m.group(3))
        return tok * ((2 if m.group(1) else 3) * lstm_tok + softmax_tok)
    m = re.match(r"predict_(doc|batch)/V\d+/(?:(\d+)x)?t(\d+)", case)
    if m:
        docs = int(m.group(2) or 1)
        return docs * int(m.group(3)) * lstm_tok
    return None


def ours(build, reps, flt, threads):
    res, extra = {}, {}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    for prog in ("bench_lstm", "bench_lm", "bench_predict"):
        exe = os.path.join(build, prog)
        if not os.path.exists(exe):
            print(f"missing {exe}: build it with cmake --build {build} --target {prog}", file=sys.stderr)
            continue
        pflt = f"({flt})|^{re.escape(PEAK_CASE)}/" if prog == "bench_lstm" else flt
        out = subprocess.run([exe, f"--benchmark_filter={pflt}", f"--benchmark_repetitions={reps}",
                              "--benchmark_min_time=0.01", "--benchmark_format=json"],
                             env=env, check=True, capture_output=True, text=True).stdout
        try:
            benchmarks = json.loads(out)["benchmarks"]
        except (ValueError, KeyError):  # no case of this program matches --filter
            continue
        runs = {}
        for b in benchmarks:
            if b.get("run_type") != "iteration":
                continue
            name = b["run_name"].split("/min_time")[0].split("/real_time")[0]
            scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b["time_unit"]]
            r = runs.setdefault(name, {"cpu": [], "wall": [], "counters": {}})
            r["cpu"].append(b["cpu_time"] * scale)
            r["wall"].append(b["real_time"] * scale)
            for k in ("GFLOP/s", "minflt/step", "sys_ms/step"):
                if k in b:
                    r["counters"].setdefault(k, []).append(b[k])
        for k, v in runs.items():
            res[k] = {"cpu_ms": statistics.median(v["cpu"]), "wall_ms": statistics.median(v["wall"])}
            for c, vals in v["counters"].items():
                extra.setdefault(k, {})[c] = statistics.median(vals)
    return res, extra


def peer(python, reps, flt, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    out = subprocess.run([python, os.path.join(ROOT, "tools/reference/bench_torch.py"),
                          "--reps", str(reps), "--filter", flt, "--threads", str(threads)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--filter", default=".")
    ap.add_argument("--python", default="../refenv/bin/python")
    ap.add_argument("--no-peer", action="store_true", help="ours only (no PyTorch columns)")
    a = ap.parse_args()
    rows, notes = [], []
    wall1 = {}
    for t in [int(x) for x in a.threads.split(",")]:
        o, extra = ours(a.build, a.reps, a.filter, t)
        p = {} if a.no_peer else peer(a.python, a.reps, a.filter, t)
        key = "cpu_ms" if t == 1 else "wall_ms"
        # the peak in the same time measure as the rows (CPU time with one thread, else wall)
        n = int(PEAK_CASE.split("/")[1])
        peak = 2.0 * n ** 3 / (o[PEAK_CASE][key] * 1e-3) / 1e9 if PEAK_CASE in o else None
        if peak:
            notes.append(f"GEMM peak, {t} thread(s): {peak:.1f} GFLOP/s ({PEAK_CASE}, ours, "
                         f"{'CPU' if t == 1 else 'wall'} time)")
        for k in sorted(set(o) | set(p)):
            if k == PEAK_CASE:
                continue
            # a "/fp16", "/int8" or "/w8a8" case of ours is set against the peer's float32 case of the
            # same name
            oo = o.get(k)
            base = re.sub(r"/(fp16|int8|w8a8)$", "", k)
            pp = p.get(k, p.get(base))
            fo = f"{oo[key]:.1f}" + (f" ({oo['wall_ms']:.1f})" if t == 1 else "") if oo else "-"
            fp = f"{pp[key]:.1f}" + (f" ({pp['wall_ms']:.1f})" if t == 1 else "") if pp else "-"
            r = f"{pp[key] / oo[key]:.2f}x" if oo and pp else "-"
            f = flops(base)
            # (w8a8 runs int8 products: a fraction of the float GEMM's peak would mislead)
            frac = (f"{f / (oo[key] * 1e-3) / (peak * 1e9) * 100:.0f} %"
                    if oo and f and peak and not k.endswith("/w8a8") else "-")
            scale = "-"
            if oo:
                if t == 1:
                    wall1[k] = oo["wall_ms"]
                elif k in wall1:
                    scale = f"{wall1[k] / oo['wall_ms']:.2f}x"
            ex = extra.get(k, {})
            if "minflt/step" in ex:
                notes.append(f"{k}, {t} thread(s): {ex['minflt/step']:.0f} minor faults and "
                             f"{ex['sys_ms/step']:.1f} ms system time per step (ours, after warm-up)")
            rows.append((t, k, fo, fp, r, frac, scale))
    print("| threads | case | ours ms | PyTorch ms | ratio | of GEMM peak | vs 1 thread (wall) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for t, k, fo, fp, r, frac, scale in rows:
        print(f"| {t} | {k} | {fo} | {fp} | {r} | {frac} | {scale} |")
    print()
    print("1 thread: process CPU ms (wall in parentheses); more threads: wall ms. Medians of "
          f"{a.reps}. ratio = PyTorch / ours.")
    for n in notes:
        print("* " + n)


if __name__ == "__main__":
    main()
