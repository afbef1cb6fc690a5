"""The benchmark's report: results.json (every figure), results.md (the tables and the targets,
met or missed) and three charts (latency.png, throughput.png, memory.png)."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PATHS = [("sluice_auto", "Sluice auto"), ("sluice_raw", "Sluice raw"),
         ("clickhouse", "ClickHouse direct"), ("redis", "Redis direct"), ("duckdb", "DuckDB Parquet")]


def _ms(x):
    return f"{x:.3g}" if x < 10 else f"{x:.0f}"


def _mib(b):
    return b / 2**20


def targets(res):
    """Each target of the issue, its figure and whether it was met."""
    out = []
    qs = res["latency"]["questions"]
    fl = res["floor"]
    for q in qs:
        if q["analyst"]:
            continue
        auto = q["ms"]["sluice_auto"]["p50"]
        best = q["ms"][q["best_direct"]]["p50"]
        out.append((f"{q['title']}: Sluice auto p50 / best direct p50 <= 1.0 (never > 1.25)",
                    f"{auto / best:.2f}", auto <= best))
    for q in qs:
        if q["long_range"]:
            ratio = q["ms"]["sluice_raw"]["p50"] / q["ms"]["sluice_auto"]["p50"]
            out.append((f"{q['title']}: raw p50 / auto p50 >= 5", f"{ratio:.1f}x", ratio >= 5))
    out.append(("gateway overhead (SELECT 1, Sluice p50 - floor p50) < 0.5 ms",
                f"{fl['overhead_p50_ms']:.2f} ms", fl["overhead_p50_ms"] < 0.5))
    for q in qs:
        if q["hot"]:
            auto = q["ms"]["sluice_auto"]["p50"]
            # The floor timed in the same interleaved passes (older results: the floor phase).
            floor_p50 = q["ms"].get("floor", fl["floor"])["p50"]
            bound = floor_p50 + q["ms"]["redis"]["p50"] + 1
            out.append((f"{q['title']}: auto p50 <= floor {floor_p50:.2f} (same passes) + "
                        f"Redis + 1 ms ({bound:.2f} ms)", f"{auto:.2f} ms", auto <= bound))
            ch = q["ms"]["clickhouse"]["p50"]
            out.append((f"{q['title']}: auto p50 < ClickHouse direct p50 ({ch:.2f} ms)",
                        f"{auto:.2f} ms", auto < ch))
    b = res["bulk_export"]["sluice_over_direct"]
    out.append(("bulk export rate >= 80% of ClickHouse Native", f"{b:.0%}", b >= 0.8))
    soak = res["memory"]["jemalloc"]
    grow = _growth(soak["rss_samples"])
    out.append((f"soak ({soak['clients']} clients, {soak['seconds'] / 60:.1f} min): no errors",
                str(soak["errors"]), soak["errors"] == 0))
    out.append(("soak: flat memory (resident growth over the last 3/4 of the run < 10%)",
                f"{grow:+.1%}", grow < 0.10))
    out.append(("answers equal on every path", str(len(res["latency"]["mismatches"])) +
                " differences", not res["latency"]["mismatches"]))
    return out


def _growth(samples):
    """Resident memory at the end against a quarter of the way in (after warm-up)."""
    if len(samples) < 4:
        return 0.0
    quarter = samples[len(samples) // 4][1]
    return samples[-1][1] / quarter - 1


def markdown(res):
    s = res["scale"]
    lines = [
        f"Run {res['when']} on {res['machine']}; ClickHouse {res['clickhouse']}, Redis "
        f"{res['redis']}, DuckDB {res['duckdb']}. {s['users']} listeners x {s['years']} years "
        f"({res['setup']['events']:,} events), {s['listeners_sampled']} listeners sampled x "
        f"{s['passes']} passes; the whole run took {res['total_s'] / 60:.1f} min.",
        "",
        "Latency, ms p50 / p95 / p99 (client wall time over the real Python ADBC driver; "
        "direct reads over ClickHouse HTTP and redis-py; DuckDB in process):",
        "",
        "| question | rows | " + " | ".join(name for _, name in PATHS)
        + " | auto / best direct | raw / auto | gateway CPU ms (auto) |",
        "|---|---:|" + "---:|" * len(PATHS) + "---:|---:|---:|",
    ]
    for q in res["latency"]["questions"]:
        cells = []
        for key, _ in PATHS:
            m = q["ms"].get(key)
            cells.append("—" if m is None else
                         f"{_ms(m['p50'])} / {_ms(m['p95'])} / {_ms(m['p99'])}")
        auto = q["ms"]["sluice_auto"]["p50"]
        best = q["ms"][q["best_direct"]]["p50"]
        raw = q["ms"]["sluice_raw"]["p50"]
        lines.append(f"| {q['title']} | {q['rows_median']:.0f} | " + " | ".join(cells)
                     + f" | {auto / best:.2f} | {raw / auto:.1f}x | "
                     f"{q['gateway_cpu_ms']['sluice_auto']:.2f} |")
    fl = res["floor"]
    lines += [
        "",
        f"Floor, `SELECT 1` over ADBC ({fl['sluice']['n']} runs): Sluice "
        f"{fl['sluice']['p50']:.2f} / {fl['sluice']['p95']:.2f} ms, trivial Flight SQL server "
        f"{fl['floor']['p50']:.2f} / {fl['floor']['p95']:.2f} ms (p50 / p95); gateway overhead "
        f"{fl['overhead_p50_ms']:.2f} ms at p50.",
        "",
        "Mixed agent workload (random listener seed questions, one connection per client):",
        "",
        "| clients | queries/s | errors | p50 / p95 / p99 ms | gateway CPU ms per query |",
        "|---:|---:|---:|---:|---:|",
    ]
    for t in res["throughput"]:
        lat = t["latency_ms"]
        lines.append(f"| {t['clients']} | {t['qps']:.0f} | {t['errors']} | {_ms(lat['p50'])} / "
                     f"{_ms(lat['p95'])} / {_ms(lat['p99'])} | "
                     f"{t['gateway_cpu_ms_per_query']:.2f} |")
    b = res["bulk_export"]
    lines += [
        "",
        f"Bulk export of {b['rows']:,} rows (median of {b['passes']}): Sluice "
        f"{b['rows_per_second']['sluice']:,.0f} rows/s, ClickHouse `Native` "
        f"{b['rows_per_second']['clickhouse_native']:,.0f} rows/s "
        f"({b['sluice_over_direct']:.0%}).",
        "",
        "Resident memory of the gateway:",
        "",
        "| allocator | clients | minutes | queries/s | errors | idle MiB | peak MiB | end MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in res["memory"].items():
        peak = max((b for _, b in m["rss_samples"]), default=0)
        lines.append(f"| {name} | {m['clients']} | {m['seconds'] / 60:.1f} | {m['qps']:.0f} | "
                     f"{m['errors']} | {_mib(m['rss_idle']):.0f} | {_mib(peak):.0f} | "
                     f"{_mib(m['rss_after']):.0f} |")
    lines += ["", "Targets:", "", "| target | figure | met |", "|---|---:|:---:|"]
    for name, figure, met in targets(res):
        lines.append(f"| {name} | {figure} | {'yes' if met else '**no**'} |")
    if res["latency"]["mismatches"]:
        lines += ["", "Answers that differed:", ""]
        for m in res["latency"]["mismatches"][:20]:
            lines.append(f"- {m['question']} for {m['user']} on {m['path']}: got {m['got']}, "
                         f"want {m['want']}")
    return "\n".join(lines) + "\n"


def charts(out, res):
    qs = res["latency"]["questions"]
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.16
    for i, (key, name) in enumerate(PATHS):
        xs = [j + (i - 2) * width for j in range(len(qs))]
        ys = [q["ms"][key]["p50"] if key in q["ms"] else 0 for q in qs]
        ax.bar(xs, ys, width, label=name)
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency, ms (log)")
    ax.set_xticks(range(len(qs)))
    ax.set_xticklabels([q["key"] for q in qs], rotation=20, ha="right")
    ax.legend()
    ax.set_title("Seed questions: Sluice against direct reads and DuckDB")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    tp = res["throughput"]
    ax.plot([t["clients"] for t in tp], [t["qps"] for t in tp], marker="o")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("queries/s")
    ax.set_title("Mixed agent workload")
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, m in res["memory"].items():
        xs = [t for t, _ in m["rss_samples"]]
        ax.plot(xs, [_mib(b) for _, b in m["rss_samples"]], label=f"{name} allocator")
    ax.set_xlabel("seconds")
    ax.set_ylabel("resident MiB")
    ax.set_title(f"Gateway memory under {res['memory']['jemalloc']['clients']} clients")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "memory.png", dpi=100)
    plt.close(fig)


def write(out, res):
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "results.md").write_text(markdown(res))
    charts(out, res)
