"""`wattload report FILE|RESULT.json --html out.html [--png DIR]`: one self-contained HTML file with charts.

Everything is inline (styles, SVG charts; no script, no font, no image fetched), so the file opens offline and can
be mailed. Input: a recording (timeline + phase table) or a `sweep --json` result (ceiling curve, power-cap curve
and Pareto frontier, matrix heatmaps, step tables). The full metadata (system, GPU, driver, profile with sha256,
pricing, wattload version) closes the page. No secret can appear: recordings and results never hold one.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from engine import __version__
from engine.reports.charts import Chart, Timeline
from engine.reports.numbers import fmt_num

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1f2933;max-width:1000px;margin:2em auto;
padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #dee2e6}
.sub{color:#868e96}.spot{background:#ebfbee;border-left:4px solid #2f9e44;padding:.6em 1em;margin:1em 0}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}th,td{padding:3px 8px;text-align:right;
border-bottom:1px solid #f1f3f5}th{background:#f8f9fa}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}svg{max-width:100%;height:auto}
pre{background:#f8f9fa;padding:1em;overflow:auto;font-size:11px}
"""


class ReportInputError(ValueError):
    """The input is neither a recording nor a sweep result; ``str()`` is one line."""


def _table(head: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return fmt_num(v)
        return html.escape("n/a" if v is None else str(v))

    out = ["<table><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _page(title: str, subtitle: str, blocks: list[str], charts: list[Chart], meta: dict[str, Any]) -> str:
    figs = [
        f'<figure id="chart-{c.id}" data-points="{c.points}"><figcaption>{html.escape(c.title)}</figcaption>'
        f"{c.svg()}</figure>"
        for c in charts
    ]
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=sub>{html.escape(subtitle)}</p>"
        + "".join(blocks)
        + "<h2>Charts</h2>"
        + "".join(figs)
        + "<h2>Metadata</h2><pre>"
        + html.escape(json.dumps(meta, indent=2, sort_keys=True, default=str))
        + "</pre></body></html>\n"
    )


def build(path: str | Path) -> tuple[str, list[Chart]]:
    """The HTML text and its charts for a recording or a sweep result."""
    p = Path(path)
    head = p.read_bytes()[:64] if p.is_file() else b""
    if head.lstrip().startswith(b"{"):
        try:
            data = json.loads(p.read_bytes())
        except ValueError:
            raise ReportInputError(f"{p}: not JSON") from None
        if not isinstance(data, dict) or data.get("format") != "wattload-sweep":
            raise ReportInputError(f"{p}: not a wattload sweep result")
        return _sweep_page(p, data)
    return _recording_page(p)


def write_html(path: str | Path, out: str | Path, png_dir: str | Path | None = None) -> list[Chart]:
    text, charts = build(path)
    target = Path(out)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    if png_dir is not None:
        d = Path(png_dir)
        d.mkdir(parents=True, exist_ok=True)
        for c in charts:
            c.png(str(d / f"{c.id}.png"))
    return charts


def _sweep_page(p: Path, data: dict[str, Any]) -> tuple[str, list[Chart]]:
    from engine.reports import charts as ch

    blocks: list[str] = []
    charts: list[Chart] = []
    result = data.get("result") or {}
    outcome = result.get("outcome") if isinstance(result, dict) else None
    if outcome and outcome.get("steps"):
        charts.append(ch.sweep_chart(outcome))
        blocks.append("<h2>Ceiling sweep</h2>")
        by_speed = any(s.get("speed") is not None for s in outcome["steps"])
        suffix, prefix = ("_speed", "×") if by_speed else ("", "")
        cap, knee = outcome.get("capacity" + suffix), outcome.get("knee" + suffix)
        blocks.append(
            f"<p>capacity {_load(cap, prefix)}, knee {_load(knee, prefix)}, goodput "
            f"{fmt_num(outcome.get('goodput_tokens_per_s'))} tok/s; {html.escape(outcome.get('stop_reason', ''))}</p>"
        )
        blocks.append(_table(
            ["trace speed" if by_speed else "concurrency", "out tok/s", "TTFT p99 ms", "TPOT p99 ms", "W", "J/tok",
             "$/M out", "verdict"],
            [[f"×{s['speed']:g}" if by_speed else s["concurrency"], s["output_tokens_per_s"], s.get("ttft_p99_ms"),
              s.get("tpot_p99_ms"), s.get("watts"),
              s.get("joules_per_output_token"), s.get("dollars_per_million_output"), s.get("verdict")]
             for s in outcome["steps"]],
        ))  # fmt: skip
    if data.get("powercap"):
        from engine.sweep.powercap_sweep import CapSweepResult

        cap = CapSweepResult.model_validate(data["powercap"])
        charts.append(ch.powercap_chart(cap))
        if cap.grid:
            charts.append(ch.pareto_chart(cap))
        from engine.reports.text import sweet_spot_text

        blocks.append("<h2>Power-cap sweep</h2>")
        blocks.append(f'<div class=spot id=sweet-spot>{html.escape(sweet_spot_text(cap))}</div>')
        blocks.append(_table(
            ["cap W", "runs", "out tok/s", "± 95%", "rel", "W", "J/tok", "± 95%", "$/M out", "TTFT p99 ms",
             "TPOT p99 ms", "binding"],
            [[s.cap_w, s.runs, s.mean("output_tokens_per_s"), _hw(s, "output_tokens_per_s"),
              _pct(s.mean("relative_throughput")), s.mean("watts"), s.mean("joules_per_output_token"),
              _hw(s, "joules_per_output_token"), s.mean("dollars_per_million_output"), s.mean("ttft_p99_ms"),
              s.mean("tpot_p99_ms"), "yes" if s.cap_binding else "no"] for s in cap.summaries],
        ))  # fmt: skip
    if data.get("cells"):
        cells = [{**c, "figures": _cell_figures(c)} for c in data["cells"]]
        for metric, title in (("output_tokens_per_s", "Matrix: output tok/s at capacity"),
                              ("joules_per_output_token", "Matrix: J per output token")):  # fmt: skip
            charts.append(ch.heatmap_chart(cells, metric, title))
    meta = {k: data.get(k) for k in ("wattload_version", "created", "endpoint", "model", "profile", "seed",
                                       "settings", "run_settings", "pricing", "sysinfo")}  # fmt: skip
    meta["report_by"] = f"wattload {__version__}"
    title = f"wattload {data.get('kind', 'sweep')}: {data.get('model', '')}"
    subtitle = f"{data.get('endpoint', '')} · {data.get('created', '')} · {p.name}"
    return _page(title, subtitle, blocks, charts, meta), charts


def _load(value: float | None, prefix: str) -> str:
    """A step's load as the sweep's axis reads: '8' (concurrency) or '×2' (trace speed); 'None' when not found."""
    return "None" if value is None else f"{prefix}{value:g}"


def _cell_figures(cell: dict[str, Any]) -> dict[str, Any]:
    o = (cell.get("result") or {}).get("outcome") or {}
    step = o.get("capacity_step") or {}
    return {"output_tokens_per_s": step.get("output_tokens_per_s"),
            "joules_per_output_token": step.get("joules_per_output_token")}  # fmt: skip


def _hw(s: Any, name: str) -> float | None:
    iv = s.figures.get(name)
    return iv.half_width if iv is not None else None


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _recording_page(p: Path) -> tuple[str, list[Chart]]:
    from engine.reports import charts as ch
    from engine.reports.report import build_report
    from engine.storage.reader import open_recording
    from engine.storage.store import RecordingError

    try:
        with open_recording(p) as rec:
            report = build_report(rec)
            tl = _timeline(rec)
            meta = {"meta": rec.meta.model_dump(mode="json") if hasattr(rec.meta, "model_dump") else str(rec.meta)}
    except RecordingError as exc:
        raise ReportInputError(str(exc)) from None
    meta["methodology"] = report.methodology.model_dump(mode="json")
    meta["report_by"] = f"wattload {__version__}"
    charts = [ch.timeline_chart(tl)]
    rows = [[f.label, f.duration_s, f.requests, f.output_tokens_per_s, f.ttft_p50_ms, f.ttft_p99_ms, f.tpot_p99_ms,
             f.error_rate, f.mean_watts, f.joules_per_output_token, f.dollars_per_million_output]
            for f in report.phases]  # fmt: skip
    blocks = [
        "<h2>Phases</h2>",
        _table(["phase", "s", "requests", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p99", "err", "W", "J/tok",
                "$/M out"], rows),
    ]
    if report.turns:
        turn_rows = [[t.turn, t.requests, t.errors, t.ttft_p50_ms, t.ttft_p99_ms, t.e2e_p50_ms, t.mean_input_tokens,
                      t.mean_output_tokens] for t in report.turns]  # fmt: skip
        blocks += ["<h2>Per turn</h2>",
                   _table(["turn", "requests", "errors", "TTFT p50", "TTFT p99", "E2E p50", "in tok", "out tok"],
                          turn_rows)]  # fmt: skip
        if report.prefix_cache is not None:
            blocks.append(f"<p>server {html.escape(report.prefix_cache.line())}</p>")
    title = f"wattload session: {report.model}"
    subtitle = f"{report.endpoint} · {report.wall_start} · {report.workload} · {p.name}"
    return _page(title, subtitle, blocks, charts, meta), charts


def _timeline(rec: Any, max_bins: int = 300) -> Timeline:
    """The session in bins of at least 1 s, from the recorded facts (not the sparse stored snapshots): output tok/s
    from stream progress as chunks arrived, TTFT p50/p99 of the requests whose first token fell in the bin (from
    their scheduled time), summed GPU watts, and requests in flight at the bin's middle."""
    import numpy as np

    duration = max(rec.duration_s, 1e-3)
    width = max(1.0, duration / max_bins)
    n = max(1, int(np.ceil(duration / width)))
    tokens = np.zeros(n)
    progress_seen = False
    for pr in rec.progress():
        progress_seen = True
        tokens[min(n - 1, max(0, int(pr.t_ns / 1e9 / width)))] += pr.chunks
    ttft: list[list[float]] = [[] for _ in range(n)]
    starts: list[int] = []
    ends: list[int] = []
    for r in rec.requests():
        starts.append(r.t_start_ns)
        ends.append(r.t_end_ns)
        if not progress_seen and r.ok:
            tokens[min(n - 1, max(0, int(r.t_end_ns / 1e9 / width)))] += r.output_tokens
        if r.ok and r.t_first_token_ns is not None:
            k = min(n - 1, max(0, int(r.t_first_token_ns / 1e9 / width)))
            ttft[k].append((r.t_first_token_ns - r.t_scheduled_ns) / 1e6)
    power: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for t in rec.telemetry():
        if t.power_w is None:
            continue
        sums, counts = power.setdefault(t.gpu_index, (np.zeros(n), np.zeros(n)))
        k = min(n - 1, max(0, int(t.t_ns / 1e9 / width)))
        sums[k] += t.power_w
        counts[k] += 1
    s_sorted, e_sorted = np.sort(np.array(starts, dtype=np.int64)), np.sort(np.array(ends, dtype=np.int64))
    tl = Timeline()
    for k in range(n):
        mid_ns = int((k + 0.5) * width * 1e9)
        tl.t_s.append((k + 0.5) * width)
        tl.output_tps.append(float(tokens[k] / width))
        tl.ttft_p50.append(float(np.percentile(ttft[k], 50)) if ttft[k] else None)
        tl.ttft_p99.append(float(np.percentile(ttft[k], 99)) if ttft[k] else None)
        if power and all(c[k] > 0 for _, c in power.values()):
            tl.watts.append(float(sum(sm[k] / c[k] for sm, c in power.values())))
        else:
            tl.watts.append(None)
        active = int(np.searchsorted(s_sorted, mid_ns, "right") - np.searchsorted(e_sorted, mid_ns, "right"))
        tl.concurrency.append(float(active))
    for _, ev in rec.events():
        kind = getattr(ev.kind, "value", str(ev.kind))
        if kind in ("concurrency", "rate"):
            tl.markers.append((ev.t_ns / 1e9, "load"))
        elif kind == "power_cap":
            tl.markers.append((ev.t_ns / 1e9, "power cap"))
    return tl
