#!/usr/bin/env python3
"""Writes the evaluation report from gati_eval's results.json.

    /usr/bin/python3 bench/report.py bench/out/results.json bench/out

Writes OUT/report.md and its PNG plots (matplotlib, Agg backend):
- latency CDFs per system;
- speedups per workload;
- hit rate over time, online vs offline, on `skewed`;
- exit-tap histograms;
- kNN memory vs hit rate next to gati's.
"""
import datetime
import json
import os
import platform
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

NAMES = {
    "base": "(a) base model",
    "gati": "(b) gati, build-time caches",
    "online": "(c) gati, online learning",
    "confidence": "(d) confidence exit",
    "knn": "(e) kNN cache (FAISS)",
    "exact": "(f) exact-match cache",
    "oracle": "(g) oracle",
}


def order(results):
    """Workloads in the order they were run."""
    return results.get("workload_order", sorted(results["workloads"]))


def systems_in(workload):
    """A workload's systems in the (a)..(g) order."""
    return [k for k in NAMES if k in workload["systems"]]


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def size(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def plot_cdfs(results, out):
    workloads = order(results)
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 3.6),
                             squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        for key in systems_in(results["workloads"][workload]):
            system = results["workloads"][workload]["systems"][key]
            values = np.sort(np.asarray(system["latencies_ms"]))
            ax.plot(values, np.arange(1, len(values) + 1) / len(values), label=key)
        ax.set_xscale("log")
        ax.set_title(workload)
        ax.set_xlabel("latency (ms)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of requests")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency_cdf.png"), dpi=90)
    plt.close(fig)


def plot_speedups(results, out):
    workloads = order(results)
    systems = [k for k in NAMES if k != "base" and all(
        k in results["workloads"][w]["systems"] for w in workloads)]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(1, len(systems))
    for i, key in enumerate(systems):
        values = [results["workloads"][w]["systems"][key]["speedup"] for w in workloads]
        ax.bar(np.arange(len(workloads)) + i * width, values, width, label=key)
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(workloads)) + width * (len(systems) - 1) / 2)
    ax.set_xticklabels(workloads)
    ax.set_ylabel("mean-latency speedup over (a)")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "speedup.png"), dpi=90)
    plt.close(fig)


def plot_hits_over_time(results, out, workload="skewed"):
    if workload not in results["workloads"]:
        return False
    systems = results["workloads"][workload]["systems"]
    if "gati" not in systems or "online" not in systems:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for key in ("gati", "online"):
        series = systems[key]["hit_series"]
        window = systems[key]["hit_window"]
        ax.plot(np.arange(1, len(series) + 1) * window, series, label=NAMES[key])
    ax.set_xlabel("request")
    ax.set_ylabel(f"hit rate per window")
    ax.set_title(f"{workload}: online vs offline")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "hits_over_time.png"), dpi=90)
    plt.close(fig)
    return True


def plot_exit_taps(results, out):
    taps = [str(t) for t in results["planned_taps"]] + ["base"]
    workloads = order(results)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / max(1, len(workloads))
    for i, workload in enumerate(workloads):
        share = results["workloads"][workload]["systems"].get("gati", {}).get("exit_share", {})
        ax.bar(np.arange(len(taps)) + i * width, [share.get(t, 0) for t in taps], width,
               label=workload)
    ax.set_xticks(np.arange(len(taps)) + width * (len(workloads) - 1) / 2)
    ax.set_xticklabels(taps)
    ax.set_xlabel("exit (planned tap, or the base model)")
    ax.set_ylabel("share of requests, (b)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "exit_taps.png"), dpi=90)
    plt.close(fig)


def plot_knn_memory(results, out):
    workloads = order(results)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for workload in workloads:
        data = results["workloads"][workload]
        sweep = data["knn_sweep"]
        line = ax.plot([p["memory_bytes"] / 1024 for p in sweep], [p["hit_rate"] for p in sweep],
                       marker="o", label=f"kNN, {workload} (tap {data['knn_tap']})")
        gati = data["systems"].get("gati")
        if gati:
            ax.scatter([results["gati_cache_bytes"] / 1024], [gati["hit_rate"]], marker="*",
                       s=140, color=line[0].get_color(), label=f"gati (b), {workload}")
    ax.set_xscale("log")
    ax.set_xlabel("cache memory (KB)")
    ax.set_ylabel("hit rate")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "knn_memory.png"), dpi=90)
    plt.close(fig)


def knn_at_memory(sweep, memory):
    """The sweep point with the largest memory not above `memory`, if any."""
    fits = [p for p in sweep if p["memory_bytes"] <= memory]
    return max(fits, key=lambda p: p["memory_bytes"]) if fits else None


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    with open(argv[1]) as f:
        results = json.load(f)
    out = argv[2]
    os.makedirs(out, exist_ok=True)
    plot_cdfs(results, out)
    plot_speedups(results, out)
    has_hits_plot = plot_hits_over_time(results, out)
    plot_exit_taps(results, out)
    plot_knn_memory(results, out)

    lines = []
    w = lines.append
    w("# gati evaluation report")
    w("")
    w(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")
    w(f"- machine: {machine()}")
    w(f"- commit: {commit()}")
    w(f"- bundle: `{results['bundle']}` (model {results['model']}, planned taps "
      f"{results['planned_taps']}, caches {size(results['gati_cache_bytes'])}, "
      f"epsilon {results['epsilon']}, confidence {results['confidence']})")
    w(f"- engine mode: {results['mode']}; one client thread for the latency figures, "
      "the systems interleaved per block of requests in one run")
    w(f"- traces: {results['trace_requests']} requests each from the Fashion-MNIST test split; "
      "requests replayed per workload as in the tables")
    w("")
    w("Systems: " + "; ".join(f"{v}" for v in NAMES.values()) + ".")
    w("Every speedup is the mean latency of (a) over the system's, same run.")
    w("")
    w("## Speedup per workload")
    w("")
    workloads = order(results)
    w("| system | " + " | ".join(workloads) + " |")
    w("|---|" + "---|" * len(workloads))
    for key, name in NAMES.items():
        if not all(key in results["workloads"][x]["systems"] for x in workloads):
            continue
        cells = []
        for x in workloads:
            s = results["workloads"][x]["systems"][key]
            cells.append(f"{s['speedup']:.2f}x ({s['agreement']:.4f})")
        w(f"| {name} | " + " | ".join(cells) + " |")
    w("")
    w("Cells: speedup (agreement with the base model).")
    w("")
    w("![speedup per workload](speedup.png)")
    w("")
    w("![latency CDF per system](latency_cdf.png)")
    w("")
    for workload in workloads:
        data = results["workloads"][workload]
        w(f"## {workload} ({data['requests']} requests)")
        w("")
        w("| system | mean ms | p50 | p95 | p99 | speedup | agreement | accuracy | hit rate | "
          "memory | req/s, 1 client | req/s, saturated | updates |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for key in systems_in(data):
            s = data["systems"][key]
            updates = s["extra"].get("updates_accepted", "") if key == "online" else ""
            if key == "online":
                updates = f"{updates} accepted, {s['extra'].get('updates_rejected', 0)} rejected"
            w(f"| {NAMES.get(key, key)} | {s['mean_ms']:.3f} | {s['p50_ms']:.3f} | "
              f"{s['p95_ms']:.3f} | {s['p99_ms']:.3f} | {s['speedup']:.2f}x | "
              f"{s['agreement']:.4f} | {s['accuracy']:.4f} | {s['hit_rate']:.3f} | "
              f"{size(s['memory_bytes'])} | {s['throughput_c1']:.0f} | "
              f"{s['throughput_saturation']:.0f} ({s['saturation_threads']} threads) | {updates} |")
        w("")
        gati = data["systems"].get("gati")
        if gati:
            shares = ", ".join(f"{tap}: {share:.3f}" for tap, share in
                           sorted(gati["exit_share"].items(),
                                  key=lambda kv: (not kv[0].isdigit(),
                                                  int(kv[0]) if kv[0].isdigit() else 0)))
            w(f"Exits of (b) by tap: {shares}.")
        knn = data["systems"].get("knn")
        if knn:
            e = knn["extra"]
            certified = [t for t in data.get("knn_tuning", []) if t["found"]]
            if certified:
                w(f"kNN: tap {e['tap']}, capacity {e['capacity']}, squared-distance threshold "
                  f"{e['threshold']:.4g}, lookup p50 {e['lookup_us_p50']:.1f} µs; taps whose "
                  "tuning certified a threshold (hit rate on the tuning trace): " +
                  ", ".join(f"{t['tap']} ({t['tuning_hit_rate']:.3f})" for t in certified) + ".")
            else:
                w(f"kNN: no tap's tuning certified a distance threshold at epsilon "
                  f"{results['epsilon']} (the nearest past request's class differs from the "
                  f"base model's too often), so it never hits; lookup p50 "
                  f"{e['lookup_us_p50']:.1f} µs.")
        w("")
    w("## Exits, adaptation and memory")
    w("")
    w("![exit-tap histogram of (b)](exit_taps.png)")
    w("")
    if has_hits_plot:
        w("![hit rate over time on skewed, online vs offline](hits_over_time.png)")
        w("")
    w("![kNN memory vs hit rate, gati's caches as stars](knn_memory.png)")
    w("")
    w("## Targets (reported, not gates)")
    w("")

    def get(workload, key):
        return results["workloads"].get(workload, {}).get("systems", {}).get(key)

    def verdict(ok):
        return "met" if ok else "not met"

    video = get("video", "gati")
    if video:
        w(f"- video >= 12x at >= 99% agreement: (b) {video['speedup']:.2f}x at "
          f"{video['agreement']:.4f}; {verdict(video['speedup'] >= 12 and video['agreement'] >= 0.99)}.")
    iid = get("iid", "gati")
    if iid:
        w(f"- iid >= 2.5x: (b) {iid['speedup']:.2f}x; {verdict(iid['speedup'] >= 2.5)}.")
    b, c = get("skewed", "gati"), get("skewed", "online")
    if b and c:
        accepted = c["extra"].get("updates_accepted", 0)
        # Without an accepted update (c) serves (b)'s caches: any gap is noise.
        beats = accepted > 0 and c["hit_rate"] > b["hit_rate"] and c["speedup"] > b["speedup"]
        w(f"- (c) beats (b) on skewed: {c['speedup']:.2f}x vs {b['speedup']:.2f}x, hit rate "
          f"{c['hit_rate']:.3f} vs {b['hit_rate']:.3f}, {accepted} updates accepted; "
          f"{verdict(beats)}" + ("" if accepted else " (no update passed the gate, so the "
                                 "speedup gap is the machine's noise)") + ".")
    for workload in workloads:
        data = results["workloads"][workload]
        g = data["systems"].get("gati")
        point = knn_at_memory(data["knn_sweep"], results["gati_cache_bytes"])
        if g and point is not None:
            w(f"- gati beats kNN at equal memory ({workload}): gati hit rate {g['hit_rate']:.3f} "
              f"with {size(results['gati_cache_bytes'])}; the largest kNN within that memory "
              f"({size(point['memory_bytes'])}) {point['hit_rate']:.3f}; "
              f"{verdict(g['hit_rate'] > point['hit_rate'])}.")
        elif g:
            w(f"- gati vs kNN at equal memory ({workload}): no kNN size fits in "
              f"{size(results['gati_cache_bytes'])}.")
    for workload in workloads:
        g, o = get(workload, "gati"), get(workload, "oracle")
        if g and o and o["speedup"] > 0:
            share = g["speedup"] / o["speedup"]
            w(f"- >= 85% of the oracle ({workload}): (b) {g['speedup']:.2f}x of the oracle's "
              f"{o['speedup']:.2f}x = {share:.0%}; {verdict(share >= 0.85)}.")
    w("")
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {os.path.join(out, 'report.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
