"""The table and plot of bench/serve_load.sh: per server and concurrency,
throughput, p50 and p99; gati (the bundle as built, and re-planned for
batches when the run has it) against the base model behind the same
batcher, with issue 18's targets flagged (at concurrency 32 and 64,
throughput >= 1.5x at a p99 no worse).

  serve_load_report.py RESULTS.tsv OUT.md OUT.png
"""
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

FIXED = ("gati", "base", "base-nobatch")


def load(path):
    rows = {}
    for line in open(path):
        name, concurrency, result = line.rstrip("\n").split("\t")
        fields = dict(kv.split("=") for kv in result.split())
        rows[(name, int(concurrency))] = {k: float(v) for k, v in fields.items()}
    return rows


def main(results, out_md, out_png):
    rows = load(results)
    levels = sorted({c for _, c in rows})
    # gati as built, then gati re-planned for batches (gati-bN), if run.
    planned = sorted({name for name, _ in rows if name.startswith("gati-b")})
    servers = ("gati", *planned, "base", "base-nobatch")
    lines = ["| server | concurrency | req/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|"]
    for name in servers:
        for c in levels:
            r = rows.get((name, c))
            if r:
                lines.append(f"| {name} | {c} | {r['rps']:.1f} | {r['p50_ms']:.2f} | "
                             f"{r['p99_ms']:.2f} | {int(r['errors'])} |")
    lines += ["", "| gati | concurrency | throughput gati / base (same batcher) | "
              "p99 base / gati | target |", "|---|---|---|---|---|"]
    for name in ("gati", *planned):
        for c in levels:
            g, b = rows.get((name, c)), rows.get(("base", c))
            if not (g and b):
                continue
            if min(g["rps"], b["rps"], g["p99_ms"], b["p99_ms"]) <= 0:
                # A server that answered nothing (see the errors above).
                lines.append(f"| {name} | {c} | - | - | no answers |")
                continue
            throughput = g["rps"] / b["rps"]
            p99 = b["p99_ms"] / g["p99_ms"]
            target = ""
            if c >= 32:
                met = throughput >= 1.5 and p99 >= 1.0
                target = "met" if met else "**missed** (>= 1.5x at a p99 no worse)"
            lines.append(f"| {name} | {c} | {throughput:.2f}x | {p99:.2f}x | {target} |")
    errors = sum(int(r["errors"]) for r in rows.values())
    if errors:
        lines.append(f"\n**{errors} requests failed.**")
    text = "\n".join(lines) + "\n"
    with open(out_md, "w") as f:
        f.write(text)
    print(text, end="")

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name in servers:
        cs = [c for c in levels if (name, c) in rows]
        for axis, key, title in zip(axes, ("rps", "p50_ms", "p99_ms"),
                                    ("throughput (req/s)", "p50 (ms)", "p99 (ms)")):
            axis.plot(cs, [rows[(name, c)][key] for c in cs], marker="o", label=name)
            axis.set_title(title)
            axis.set_xscale("log", base=2)
            axis.set_xlabel("concurrency")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(out_png, dpi=100)
    if errors:
        raise SystemExit("serve_load: some requests failed")


if __name__ == "__main__":
    main(*sys.argv[1:4])
