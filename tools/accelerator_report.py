"""The accelerator check's report as markdown: the device and its peak matmul throughput, each part's status
and time, the goals, and one table per kind of row (``tools/accelerator_check.py`` writes it after each part
as ``accelerator_check.md``, beside the same report as JSON).

A report is a dict: ``mode`` ("full" or "dry run"), ``started_utc``, ``budget_s``, ``elapsed_s`` (once done)
and ``parts``, each with its ``name``, ``description``, ``status`` (ok, failed, timeout, skipped) and the
``rows`` its command printed (``tools/accelerator_parts.py`` and the bench commands' ``--json`` rows).
"""

from __future__ import annotations


def part_rows(report: dict, *names: str, what: str | None = None) -> list[dict]:
    """The rows of the parts ``names``, of kind ``what`` when given."""
    rows = [r for p in report["parts"] if p["name"] in names for r in p.get("rows", [])]
    return [r for r in rows if what is None or r.get("what") == what]


def _peak(report: dict, dtype: str, precision: str = "default"):
    """The measured peak matmul GFLOP/s for a compute dtype (the ``device`` part)."""
    peaks = {(r["dtype"], r["precision"]): r["gflops"] for r in part_rows(report, "device", what="peak")}
    return peaks.get((dtype, precision))


def _fmt(value, spec=".1f", scale=1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def _share(gflops, peak) -> str:
    """Percent of the peak."""
    return _fmt(gflops / peak if gflops and peak else None, ".1f", 100)


def _table(header: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]


def goals(report: dict) -> list[dict]:
    """The goals on one GPU: the WN iteration (the paper's model and the ResNet follow-up) at least 1.5x the
    authors' at 64 and 160, bfloat16 at least 1.8x float32 at 160, the final test under 5 minutes. ``met`` is
    None where not judged (a dry run)."""
    judged = report["mode"] == "full"
    out = []
    authors = {r["size"]: r for r in part_rows(report, "authors_wn", what="authors") if r["norm"] == "wn"}
    bf16 = {r["size"]: r for r in part_rows(report, "train_bf16_wn", what="train") if r["norm"] == "wn"}
    for size, r in sorted(authors.items()):
        out.append(dict(goal=f"WN {size}x{size} iteration >= 1.5x the authors'", value=r["speedup"], target=1.5))
    for r in sorted(part_rows(report, "authors_resnet_wn", what="authors"), key=lambda r: r["size"]):
        goal = f"WN ResNet {r['size']}x{r['size']} iteration >= 1.5x the authors'"
        out.append(dict(goal=goal, value=r["speedup"], target=1.5))
    for size in sorted(set(authors) & set(bf16)):
        ratio = authors[size]["median_ms"] / bf16[size]["median_ms"]
        out.append(dict(goal=f"WN {size}x{size} bfloat16 vs float32", value=ratio, target=1.8 if size == 160 else None))
    final = part_rows(report, "final_test", what="final_test")
    if final:
        seconds = final[-1]["extrapolated_final_test_s"]
        out.append(dict(goal="final test 2000 x 2000 at 160x160, seconds", value=seconds, target=-300))
    for g in out:  # a negative target is an upper bound
        t = g.pop("target")
        g["met"] = None if t is None or not judged else (g["value"] >= t if t > 0 else g["value"] < -t)
    return out


def markdown(report: dict) -> str:
    """The report as markdown; a failed or timed-out part ends it with its command and the tail of its output."""
    lines = [f"# Accelerator check ({report['mode']}), {report['started_utc']}", ""]
    dev = next(iter(part_rows(report, "device", what="device")), None)
    if dev:
        memory = dev["memory_bytes_limit"]
        missing = ", ".join(dev["missing_modules"])
        peaks = part_rows(report, "device", what="peak")
        lines += [
            f"Device: {dev['platform']} {dev['device_kind']} x{dev['device_count']}"
            + (f", {memory / 2**30:.1f} GiB for JAX" if memory else "")
            + f"; Python {dev['python']}, JAX {dev['jax']}, PyTorch {dev['torch']} (CUDA: {dev['torch_cuda']})"
            + (f"; missing: {missing}" if missing else ""),
            "",
            "Peak matmul: "
            + ", ".join(f"{r['dtype']} {r['precision']} {r['gflops'] / 1e3:.1f} TFLOP/s" for r in peaks),
            "",
        ]
    lines += _table(
        ["part", "what", "status", "seconds", "CPU seconds"],
        [
            [
                p["name"],
                p["description"],
                p["status"] + (f" ({p['why']})" if p.get("why") else ""),
                _fmt(p.get("elapsed_s")),
                _fmt(p.get("cpu_s")),
            ]
            for p in report["parts"]
        ],
    )
    if report.get("elapsed_s"):
        lines += ["", f"Total {report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget."]

    met = {None: "-", True: "yes", False: "NO"}
    if g := goals(report):
        lines += ["", "## Goals", ""] + _table(
            ["goal", "measured", "met"], [[x["goal"], _fmt(x["value"], ".2f"), met[x["met"]]] for x in g]
        )

    if checks := part_rows(report, "correctness"):
        lines += ["", "## Correctness: accelerator against CPU", ""] + _table(
            ["check", "quantity", "precision", "error", "tolerance", "ok"],
            [
                [c["check"], c["quantity"], c["precision"], f"{c['error']:.2e}", f"{c['tolerance']:.0e}", met[c["ok"]]]
                for c in checks
            ],
        )

    parts = ("authors_wn", "authors_vanilla_bn", "authors_resnet_wn", "train_bf16_wn", "train_bf16_vanilla_bn")
    if train := [r for r in part_rows(report, *parts) if r.get("what") in ("authors", "train")]:
        rows = []
        for r in sorted(train, key=lambda r: (r["size"], r.get("model", r["norm"]), r.get("dtype", "float32"))):
            dtype = r.get("dtype", "float32")
            rows.append(
                [
                    r["size"],
                    r.get("model", r["norm"]),
                    dtype,
                    _fmt(r["median_ms"], ".2f"),
                    _fmt(r.get("gflop_per_iteration")),
                    _fmt(r["gflops"], ".1f", 1e-3),
                    _share(r["gflops"], _peak(report, dtype)),
                    _fmt(r.get("authors_median_ms"), ".2f"),
                    _fmt(r.get("speedup"), ".2f"),
                ]
            )
        header = ["size", "model", "dtype", "ms/it", "GFLOP/it", "TFLOP/s", "% of peak", "authors' ms/it", "speedup"]
        lines += ["", f"## Training iteration (batch {train[0]['batch']}, D step + G step)", ""] + _table(header, rows)

    if final := part_rows(report, "final_test", what="final_test"):
        peak = _peak(report, "float32")
        rows = [
            [
                r["size"],
                f"{r['samples']} x {r['steps']}",
                f"{r['chunk']} ({r['chunks']})",
                f"{r['sample_steps_per_s']:.0f}",
                _share(r["gflops"], peak),
                _fmt(r["peak_bytes_in_use"], ".1f", 2**-30),
                f"{r['compile_s']:.1f}",
                f"{r['extrapolated_final_test_s']:.0f}",
            ]
            for r in final
        ]
        header = ["size", "samples x steps", "chunk (chunks)", "sample-steps/s", "% of peak", "peak GiB", "compile s"]
        lines += ["", "## Reconstruction (WN generator, float32, default precision)", ""]
        lines += _table(header + ["2000 x 2000 extrapolated, s"], rows)
    for r in part_rows(report, "reconstruct_loop", what="reconstruct"):
        lines += [
            "",
            f"`reconstruct` against the authors' loop at {r['size']}x{r['size']}, {r['samples']} samples: "
            f"{r['sample_steps_per_s']:.0f} vs {r['baseline_sample_steps_per_s']:.0f} sample-steps/s "
            f"({r['speedup']:.2f}x).",
        ]

    if layers := part_rows(report, "layers", what="layers"):
        rows = [
            [
                r["layer"],
                f"{r['custom_ms']:.3f}",
                f"{r['xla_ms']:.3f}",
                f"{r['speedup']:.2f}",
                _fmt(r["torch_ms"], ".3f"),
            ]
            for r in layers
        ]
        lines += ["", "## Layers: custom VJP against XLA's native transposed convolution (forward + backward)", ""]
        lines += _table(["layer", "custom ms", "XLA ms", "custom speedup", "PyTorch ms"], rows)

    for d in part_rows(report, "digits", what="digits"):
        tests = "; ".join(f"{k}: {v.get('mean_loss')}" for k, v in d["final_test"].items()) or "none"
        lines += [
            "",
            f"Digits run: {len(d['checkpoints'])} checkpoints, {len(d['samples'])} sample grids, "
            f"{d['metrics_lines']} metric lines; final test {tests}.",
        ]

    for p in report["parts"]:
        if p["status"] in ("failed", "timeout"):
            lines += ["", f"### {p['name']}: {p['status']}", "", "```", p["command"], *p["output_tail"], "```"]
    return "\n".join(lines) + "\n"
