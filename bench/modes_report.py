"""Table of `gati replay --summary-json` results (bench/modes.sh): per model,
trace and configuration, the median over repeated runs of gati's speedup
over the base model (base / gati) at the mean, p50, p95 and p99, the
planner's predicted speedup, and a flag on every configuration that misses
a target of issue 14: mean >= 1.0x, p95 and p99 no worse than 1.05x the
base model's (speedup >= 1 / 1.05). The `--no-cache` rows run the engine
without caches against the base model: the same work on both sides, so
their distance from 1.0x is the noise floor of the machine; a mean is
flagged only when it is below 1.0x by more than that. Usage:
  modes_report.py SUMMARY_DIR OUT.md
"""
import collections
import glob
import json
import os
import statistics
import sys

TAIL = 1 / 1.05
STATS = ("mean_ms", "p50_ms", "p95_ms", "p99_ms")


def speedups(run):
    return {k: run["base"][k] / run["gati"][k] if run["gati"][k] > 0 else 0 for k in STATS}


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: modes_report.py SUMMARY_DIR OUT.md")
    groups = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
        with open(path) as f:
            run = json.load(f)
        config = "no-cache" if ".no-cache." in os.path.basename(path) else run["mode_asked"]
        groups[(run["model"], os.path.basename(run["trace"])[:-4], config)].append(run)
    if not groups:
        sys.exit(f"modes_report.py: no summaries in {sys.argv[1]}")
    noise = {}
    for (model, trace, config), runs in groups.items():
        if config == "no-cache":
            noise[model] = abs(1 - statistics.median(speedups(r)["mean_ms"] for r in runs))
    order = {"auto": 0, "parallel": 1, "sequential": 2, "no-cache": 3}
    lines = ["| model | trace | mode asked | ran as | mean | p50 | p95 | p99 | "
             "predicted | agreement | flags |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    flagged = 0
    repeats = 0
    for key in sorted(groups, key=lambda k: (k[0], k[1], order.get(k[2], 9))):
        model, trace, config = key
        runs = groups[key]
        repeats = max(repeats, len(runs))
        median = {k: statistics.median(speedups(r)[k] for r in runs) for k in STATS}
        ran_as = "/".join(sorted({r["mode"] for r in runs}))
        flags = []
        if config != "no-cache":
            if median["mean_ms"] < 1.0 - noise.get(model, 0):
                flags.append("SLOWER at the mean")
            if median["p95_ms"] < TAIL:
                flags.append("p95 > 1.05x base")
            if median["p99_ms"] < TAIL:
                flags.append("p99 > 1.05x base")
        flagged += bool(flags)
        r = runs[0]
        # A plan made for batches predicts per row of a batch, not these
        # single requests.
        batch_plan = r.get("plan_batch", 1) > 1
        predicted = (r["predicted_base_ms"] / r["predicted_mean_ms"]
                     if r["predicted_mean_ms"] > 0 else 1.0)
        predicted_text = "batch plan" if batch_plan else f"{predicted:.2f}x"
        agreement = statistics.median(x["agreement"] for x in runs)
        lines.append(
            f"| {model} | {trace} | {config} | {ran_as} | {median['mean_ms']:.2f}x | "
            f"{median['p50_ms']:.2f}x | {median['p95_ms']:.2f}x | {median['p99_ms']:.2f}x | "
            f"{predicted_text} | {agreement:.4f} | {', '.join(flags) or '-'} |")
    first = next(iter(groups.values()))[0]
    lines += ["", f"Medians over {repeats} runs of {first['requests']} requests per "
              f"configuration; speedup = base / gati per statistic; noise floor (no-cache "
              f"mean off 1.0x): " + ", ".join(f"{m} {v:.3f}" for m, v in sorted(noise.items()))
              + f"; {flagged} configurations flagged.", "", "How auto chose:", ""]
    for (model, trace, config), runs in sorted(groups.items()):
        if config == "auto":
            for r in runs:
                lines.append(f"- {model}, {trace}: {r['mode_report']}")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
