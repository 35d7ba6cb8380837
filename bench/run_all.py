"""Run every bench script (bank, extract, train, scan) with --json, one after another, and print ONE table:
figure, value, target, pass/fail, with the date and machine on top. A missing or failing script shows its error
in the table and the others still run. `make bench` runs this.

    .venv/bin/python bench/run_all.py [--only train scan] [--device cpu] [--markdown] [--timeout 900]

A script's JSON object should hold a `figures` list (see bench/_common.py: name, value, unit, target, ok,
note). bench/bank.py and bench/extract.py print flat keys and are mapped here; any other script without `figures`
has its top-level numbers listed with no target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_value, loadavg, machine, verdict  # noqa: E402

HERE = Path(__file__).resolve().parent
SCRIPTS = ("bank", "extract", "pairs", "train", "scan")


def _bank_figures(res: dict[str, Any]) -> list[dict[str, Any]]:
    """bench/bank.py prints flat keys; its targets (issue 2) are stated in its docstring."""
    n = res.get("bank_entries")
    ms, mb = res.get("retrieve_ms_median"), res.get("bank_mb")
    return [
        {"name": f"bank retrieve, 64 queries top-{res.get('topk')} of {n:,} entries", "value": ms, "unit": "ms",
         "target": "< 50 ms", "ok": None if ms is None else ms < 50},
        {"name": f"bank memory, {n:,} entries", "value": mb, "unit": "MB", "target": "< 600 MB",
         "ok": None if mb is None else mb < 600},
    ]


def _extract_figures(res: dict[str, Any]) -> list[dict[str, Any]]:
    """bench/extract.py prints flat keys; its target (issue 3) is sampled decode / decode every frame <= 0.5."""
    r = res.get("sampled_over_all")
    n = res.get("frames_sampled")
    return [
        {"name": f"extract: decode every frame ({res.get('frames_total')} frames)", "value": res.get("decode_all_s"),
         "unit": "s", "target": "", "ok": None},
        {"name": f"extract: sampled decode ({n} frames)", "value": res.get("decode_sampled_s"), "unit": "s",
         "target": "", "ok": None, "note": f"always seeking: {res.get('decode_always_seek_s', float('nan')):.3f} s"},
        {"name": "extract: sampled / every-frame decode", "value": r, "unit": "x", "target": "≤ 0.5",
         "ok": None if r is None else r <= 0.5},
        {"name": f"extract: MTCNN per frame ({res.get('size')})", "value": res.get("detect_ms_per_frame"), "unit": "ms",
         "target": "", "ok": None},
        {"name": "extract: detect_source end to end", "value": res.get("crops_per_s_end_to_end"), "unit": "crops/s",
         "target": "", "ok": None},
    ]


def _generic_figures(name: str, res: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": f"{name}: {k}", "value": float(v), "unit": "", "target": "", "ok": None}
            for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def figures_of(name: str, res: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(res.get("figures"), list):
        return res["figures"]
    if name == "bank":
        return _bank_figures(res)
    if name == "extract" and "sampled_over_all" in res:
        return _extract_figures(res)
    return _generic_figures(name, res)


def accepts_device(script: Path) -> bool:
    p = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    return "--device" in p.stdout


def run_script(name: str, device: str, timeout: float) -> dict[str, Any]:
    """Run bench/NAME.py --json; returns {name, seconds, figures} or {name, seconds, error}."""
    script = HERE / f"{name}.py"
    if not script.is_file():
        return {"name": name, "seconds": 0.0, "error": f"bench/{name}.py not found"}
    cmd = [sys.executable, str(script), "--json"]
    if device != "cpu":
        if not accepts_device(script):
            return {"name": name, "seconds": 0.0, "error": f"bench/{name}.py has no --device option"}
        cmd += ["--device", device]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
    except subprocess.TimeoutExpired:
        return {"name": name, "seconds": time.perf_counter() - t0, "error": f"timed out after {timeout:.0f} s"}
    secs = time.perf_counter() - t0
    objs = [ln for ln in p.stdout.splitlines() if ln.lstrip().startswith("{")]
    if p.returncode != 0 or not objs:
        lines = (p.stderr.strip() or p.stdout.strip() or "no output").splitlines()
        return {"name": name, "seconds": secs, "error": f"exit {p.returncode}: {lines[-1][:200]}"}
    try:
        res = json.loads(objs[-1])
    except json.JSONDecodeError as e:
        return {"name": name, "seconds": secs, "error": f"its --json output is not JSON ({e})"}
    return {"name": name, "seconds": secs, "figures": figures_of(name, res), "raw": res}


def rows_of(results: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(script, figure, value, target, pass) rows; a failed script is one row holding its error."""
    rows = []
    for r in results:
        if "error" in r:
            rows.append((r["name"], "ERROR: " + r["error"], "—", "—", "ERROR"))
            continue
        for f in r["figures"]:
            name = f["name"] + (f" ({f['note']})" if f.get("note") else "")
            rows.append((r["name"], name, fmt_value(f.get("value"), f.get("unit", "")), f.get("target") or "—",
                         verdict(f.get("ok")) if f.get("target") else "n/a"))
    return rows


def header_lines(info: dict[str, Any], load_start, load_end, results) -> list[str]:
    took = ", ".join(f"{r['name']} {r['seconds']:.0f} s" for r in results)
    env = info.get("env")
    return [
        f"forgerydet benchmarks, {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['torch_threads']} threads, "
        f"device {info['device']}" + (f" ({info['gpu']})" if info.get("gpu") else ""),
        f"load average (1/5/15 min): {load_start} at the start, {load_end} at the end",
        f"run time: {took}",
    ] + ([f"environment: {' '.join(f'{k}={v}' for k, v in env.items())}"] if env else [])


def print_markdown(lines: list[str], rows) -> None:
    for ln in lines:
        print(ln + "  ")
    print()
    print("| script | figure | value | target | pass |")
    print("|---|---|---:|---|---|")
    for r in rows:
        print("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")


def print_table(lines: list[str], rows) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        for ln in lines:
            print(ln)
        for r in rows:
            print(f"{r[0]:<8} {r[1]:<90} {r[2]:>14}  {r[3]:<10} {r[4]}")
        return
    console = Console(width=max(140, Console().width))
    for ln in lines:
        console.print(ln, highlight=False)
    table = Table(show_lines=False)
    table.add_column("script")
    table.add_column("figure", overflow="fold")
    table.add_column("value", justify="right")
    table.add_column("target")
    table.add_column("pass")
    style = {"PASS": "green", "FAIL": "bold red", "ERROR": "bold red"}
    for r in rows:
        table.add_row(*r[:4], f"[{style.get(r[4], 'dim')}]{r[4]}[/]")
    console.print(table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--only", nargs="+", choices=SCRIPTS, default=list(SCRIPTS), help="scripts to run (default: all)")
    ap.add_argument("--device", default="cpu", help="passed to the scripts that take --device (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for every script (sets OMP_NUM_THREADS; default: torch's own choice)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per script (default: %(default)s)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (for bench/README.md)")
    ap.add_argument("--json", action="store_true", help="print everything as one JSON object instead")
    args = ap.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by torch at import, here and in the scripts
    info = machine(args.device)
    load_start = loadavg()
    results = []
    for name in args.only:
        print(f"running bench/{name}.py ...", file=sys.stderr, flush=True)
        results.append(run_script(name, args.device, args.timeout))
    load_end = loadavg()
    if args.json:
        print(json.dumps({"machine": info, "loadavg_start": load_start, "loadavg_end": load_end, "results": results}))
        return 0
    lines = header_lines(info, load_start, load_end, results)
    rows = rows_of(results)
    (print_markdown if args.markdown else print_table)(lines, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
