"""The crawl page as one HTML document: inline CSS, server-rendered SVG charts, a few lines of script.

Nothing loads from elsewhere, so the page works offline. Every value from data is escaped.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from urllib.parse import quote, urlencode

_HERE = Path(__file__).parent
CSS = (_HERE / "page.css").read_text(encoding="utf-8")
JS = (_HERE / "page.js").read_text(encoding="utf-8")

KEPT_COLOR = "#3a7d44"
# Drop reasons get these in order of how many rows they dropped (the biggest gets the first).
PALETTE = ["#e45756", "#f58518", "#4c78a8", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac", "#eeca3b", "#72b7b2",
           "#54a24b", "#d67195", "#439894", "#a0cbe8", "#ffbe7d", "#8cd17d", "#86bcb6", "#f1ce63", "#d4a6c8",
           "#fabfd2", "#79706e"]
STAGE_COLORS = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#9d755d",
                "#ff9da6", "#bab0ac"]


def page(view: dict, *, crawls: list[str], prefix: str, can_edit: bool, sample_id: str = "",
         trace: dict | None = None) -> str:
    """The whole page for one crawl. prefix: where the plugin is mounted ("/danqing")."""
    crawl = view["crawl"]
    run = view["run"]
    refresh = '<meta http-equiv="refresh" content="60">' if run and run["state"] in ("queued", "running") else ""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>DanQing · {escape(crawl)}</title>{refresh}<style>{CSS}</style></head><body>",
        _header(view, crawls, prefix),
        _findings(view),
        _section("funnel", "Funnel", "Rows in and out of each stage; dropped rows stacked by reason.",
                 funnel_svg(view["funnel"])),
        _section("grid", "Shards", "Each task of the run by shard; a cell opens that task instance's log.",
                 _grid(view, can_edit, prefix)),
        _section("errors", "Top errors", "Error codes by count and the shards they hit (docs/RUNBOOK.md).",
                 _errors(view)),
        _section("downloads", "Download success",
                 f"Images fetched of those attempted (robots opt-outs and repeated ids are not attempted); "
                 f"highlighted under {view['thresholds']['min_download_success']:.0%}.", _downloads(view)),
        _section("trend", "Across crawls", "Kept ratio per stage for each released crawl.", _trend(view)),
        _section("sample", "Sample lookup", "A sample id in; its path stage by stage back to its WARC record out.",
                 _sample(view, prefix, sample_id, trace)),
        _section("release", "Release", "Where this crawl's release went.", _release(view)),
        _section("alerts", "Alerts", "What paged for this crawl, newest first.", _alerts(view)),
        f"<script>{JS}</script></body></html>",
    ]
    return "".join(parts)


def index(crawls: list[str], prefix: str) -> str:
    items = "".join(f"<li><a href='{prefix}/crawl/{quote(c)}'>{escape(c)}</a></li>" for c in crawls)
    body = f"<ul>{items}</ul>" if crawls else "<p>No crawl has lineage yet: trigger <code>danqing_snapshot</code>.</p>"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>DanQing</title><style>{CSS}</style>"
            f"</head><body><h1>DanQing crawls</h1>{body}</body></html>")


def _header(view: dict, crawls: list[str], prefix: str) -> str:
    crawl, run = view["crawl"], view["run"]
    picker = "".join(f"<option value='{escape(c)}'{' selected' if c == crawl else ''}>{escape(c)}</option>"
                     for c in crawls)
    shown = run["run_id"] if run else None
    runs = "".join(f"<option value='{escape(r['run_id'])}'{' selected' if r['run_id'] == shown else ''}>"
                   f"{escape(r['run_id'])} ({escape(r['state'])})</option>" for r in view["runs"])
    html = [f"<header><h1>DanQing <span class='crawl'>{escape(crawl)}</span></h1>",
            f"<form class='pick' method='get' action='{prefix}/go'><label>crawl <select name='crawl' "
            f"onchange='this.form.submit()'>{picker}</select></label>"]
    if runs:
        html.append(f" <label>run <select name='run' onchange='this.form.submit()'>{runs}</select></label>")
    html.append("<noscript><button>show</button></noscript></form>")
    if run:
        html.append(f"<p class='run'>run <b>{escape(run['run_id'])}</b> <span class='badge {escape(run['state'])}'>"
                    f"{escape(run['state'])}</span> queued {escape(run['queued_at'] or '-')}, started "
                    f"{escape(run['start_date'] or '-')}, ended {escape(run['end_date'] or '-')}</p>")
    else:
        html.append("<p class='run'>No Airflow run of this crawl: the grid shows lineage only.</p>")
    html.append(_progress(view.get("progress") or {}))
    html.append("</header>")
    return "".join(html)


def _progress(p: dict) -> str:
    if not p:
        return ""
    rate = (f"<b>{p['pairs_per_s']:.1f}</b> pairs/s, <b>{p['images_per_s']:.1f}</b> images/s"
            if p.get("pairs_per_s") is not None else "no rates yet")
    text = (f"{p['pairs']:,} candidate pairs extracted and {p['images']:,} images fetched in "
            f"{_duration(p['elapsed_s'])} ({rate}); {p['cells_done']} of {p['cells']} shard tasks done")
    if p.get("eta"):
        text += f"; <b>ETA {escape(p['eta'])}</b> (about {_duration(p['eta_s'])} more at this pace)"
    return f"<p class='progress' id='progress'>{text}</p>"


def _findings(view: dict) -> str:
    if not view["findings"]:
        return ""
    items = "".join(f"<li><code>{escape(f['code'])}</code> shard {f['shard']:05d}, {escape(f['stage'])}: "
                    f"{escape(f['reason'])}</li>" for f in view["findings"])
    return f"<div class='findings' id='findings'><b>Data quality</b><ul>{items}</ul></div>"


def _section(anchor: str, title: str, note: str, body: str) -> str:
    return f"<section id='{anchor}'><h2>{escape(title)}</h2><p class='note'>{escape(note)}</p>{body}</section>"


def reason_totals(funnel: list[dict]) -> dict[str, int]:
    """Rows dropped per reason over all stages, the biggest first."""
    totals: dict[str, int] = {}
    for s in funnel:
        for reason, n in s["dropped"].items():
            totals[reason] = totals.get(reason, 0) + n
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def funnel_svg(funnel: list[dict]) -> str:
    """Horizontal bars, one per stage: its rows in, kept (green) then dropped by reason."""
    if not funnel:
        return "<p>No lineage recorded for this crawl yet.</p>"
    totals = reason_totals(funnel)
    colors = {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(totals)}
    widest = max(s["in"] for s in funnel) or 1
    left, width, bar, gap = 90, 560, 20, 10
    height = len(funnel) * (bar + gap) + 4
    out = [f"<svg class='funnel' role='img' aria-label='funnel chart' viewBox='0 0 900 {height}' "
           f"width='900' height='{height}'>"]
    for i, s in enumerate(funnel):
        y = i * (bar + gap) + 2
        out.append(f"<text x='{left - 8}' y='{y + 15}' text-anchor='end' class='label'>{escape(s['stage'])}</text>")
        x = float(left)
        segments = [("kept", s["out"], KEPT_COLOR)] + [
            (reason, n, colors[reason]) for reason, n in sorted(s["dropped"].items(), key=lambda kv: -kv[1])]
        for name, n, color in segments:
            w = width * n / widest
            if n:
                out.append(f"<rect class='seg' data-reason='{escape(name)}' x='{x:.1f}' y='{y}' "
                           f"width='{max(w, 1):.1f}' height='{bar}' fill='{color}'>"
                           f"<title>{escape(s['stage'])}: {escape(name)} {n:,}</title></rect>")
            x += w
        share = f" ({s['out'] / s['in']:.0%})" if s["in"] else ""
        out.append(f"<text x='{left + width + 8}' y='{y + 15}' class='value'>kept {s['out']:,} of {s['in']:,}{share}"
                   f"{', ' + str(s['shards']) + ' shards' if s.get('shards') else ''}</text>")
    out.append("</svg>")
    legend = [f"<li><i style='background:{KEPT_COLOR}'></i>kept</li>"]
    legend += [f"<li><i style='background:{colors[r]}'></i>{escape(r)} {n:,}</li>" for r, n in totals.items()]
    return "".join(out) + f"<ul class='legend'>{''.join(legend)}</ul>"


def _grid(view: dict, can_edit: bool, prefix: str) -> str:
    grid, run = view["grid"], view["run"]
    if not grid["rows"]:
        return "<p>Nothing ran for this crawl yet.</p>"
    wide = len(grid["shards"]) <= 48
    rows = []
    for row in grid["rows"]:
        cells = "".join(_cell(c, wide) for c in row["cells"])
        kind = "per shard" if row["per_shard"] else "whole crawl"
        rows.append(f"<tr data-task='{escape(row['task'])}'><th title='{kind}'>{escape(row['task'])}</th>"
                    f"<td><div class='cells{'' if row['per_shard'] else ' whole'}'>{cells}</div></td></tr>")
    legend = "".join(f"<li><i class='cell {s.replace(' ', '-')}'></i>{s}</li>"
                     for s in ("done", "failed", "running", "up for retry", "not started"))
    failed = sum(c["state"] == "failed" for r in grid["rows"] for c in r["cells"])
    action = ""
    if run and failed:
        if can_edit:
            action = (f"<p class='action'><button id='clear-failed' data-url='{prefix}/api/runs/"
                      f"{quote(run['run_id'], safe='')}/clear-failed'>Clear the {failed} failed task instance"
                      f"{'s' if failed > 1 else ''} of this run</button> <span id='clear-result'></span></p>")
        else:
            action = (f"<p class='action note'>{failed} failed; clearing them needs permission to edit "
                      f"<code>{escape(view['dag_id'])}</code>.</p>")
    return (f"<table class='grid'>{''.join(rows)}</table><ul class='legend states'>{legend}</ul>{action}")


def _cell(c: dict, wide: bool) -> str:
    label = f"shard {c['shard']:05d}" if c["shard"] is not None else "whole crawl"
    title = f"{c['task']} {label}: {c['state']} (Airflow: {c['raw']}"
    title += f", try {c['try']})" if c["try"] else ")"
    if c["rows_in"] is not None:
        title += f"; kept {c['kept']:,} of {c['rows_in']:,}; {c['lineage']}"
    text = escape(str(c["shard"])) if wide and c["shard"] is not None else ("crawl" if c["shard"] is None else "")
    cls = f"cell {c['state'].replace(' ', '-')}"
    attrs = (f"class='{cls}' data-task='{escape(c['task'])}' data-shard='{'' if c['shard'] is None else c['shard']}' "
             f"data-state='{escape(c['state'])}' title='{escape(title)}'")
    if c["log_url"]:
        return f"<a {attrs} href='{escape(c['log_url'])}' data-ui>{text}</a>"
    return f"<span {attrs}>{text}</span>"


def _logs(view: dict) -> dict[tuple[str, int | None], str]:
    """(task, shard) -> that task instance's log page, for the cells of the run shown."""
    return {(c["task"], c["shard"]): c["log_url"] for r in view["grid"]["rows"] for c in r["cells"] if c["log_url"]}


def _shard_link(logs: dict, task: str, shard: int, text: str) -> str:
    log = logs.get((task, shard))
    return f"<a href='{escape(log)}' data-ui title='task log'>{text}</a>" if log else text


def _errors(view: dict) -> str:
    if not view["errors"]:
        return "<p>No errors recorded.</p>"
    logs, rows = _logs(view), []
    for e in view["errors"]:
        shards = ", ".join(f"{_shard_link(logs, e['stage'], s['shard'], format(s['shard'], '05d'))} ({s['count']:,})"
                           for s in e["shards"][:12])
        more = f" and {len(e['shards']) - 12} more" if len(e["shards"]) > 12 else ""
        rows.append(f"<tr><td><code>{escape(e['code'])}</code></td><td>{escape(e['stage'])}</td>"
                    f"<td class='n'>{e['count']:,}</td><td>{shards}{more}</td></tr>")
    return ("<table class='list'><tr><th>code</th><th>stage</th><th class='n'>count</th><th>shards (count)</th></tr>"
            + "".join(rows) + "</table>")


def _downloads(view: dict) -> str:
    if not view["downloads"]:
        return "<p>No shard downloaded yet.</p>"
    threshold = view["thresholds"]["min_download_success"]
    rows = []
    for d in view["downloads"]:
        low = d["rate"] is not None and d["rate"] < threshold
        rate = f"{d['rate']:.1%}" if d["rate"] is not None else "-"
        top = ", ".join(f"{escape(k)} {v:,}" for k, v in list(d["failed"].items())[:3]) or "-"
        rows.append(f"<tr class='{'low' if low else ''}' data-shard='{d['shard']}'><td>{d['shard']:05d}</td>"
                    f"<td class='n'>{d['attempted']:,}</td><td class='n'>{d['fetched']:,}</td>"
                    f"<td class='n rate'>{rate}</td><td class='n'>{d['classes']['transient']:,}</td>"
                    f"<td class='n'>{d['classes']['permanent']:,}</td><td>{top}</td></tr>")
    shards = ("<table class='list downloads'><tr><th>shard</th><th class='n'>attempted</th><th class='n'>fetched</th>"
              "<th class='n'>success</th><th class='n'>transient</th><th class='n'>permanent</th>"
              "<th>most failed as</th></tr>" + "".join(rows) + "</table>")
    classes = "".join(f"<tr><td>{escape(c['class'])}</td><td><code>{escape(c['reason'])}</code></td>"
                      f"<td class='n'>{c['rows']:,}</td><td class='n'>{(c['share'] or 0):.1%}</td>"
                      f"<td class='n'>{c['shards']}</td></tr>" for c in view["failure_classes"])
    by_class = ("<h3>By failure class</h3><p class='note'>transient: a rerun of the shard fetches it again; "
                "permanent: it will not.</p><table class='list'><tr><th>class</th><th>reason</th>"
                "<th class='n'>rows</th><th class='n'>of attempted</th><th class='n'>shards</th></tr>"
                + classes + "</table>") if classes else ""
    return shards + by_class


def _trend(view: dict) -> str:
    trend = view["trend"]
    if not trend:
        return "<p>No crawl released yet.</p>"
    stages = [s for s in view["stages"] if any(t["kept"].get(s) is not None for t in trend)] or \
        sorted({s for t in trend for s in t["kept"]})
    head = "".join(f"<th class='n'>{escape(s)}</th>" for s in stages)
    rows = []
    for t in trend:
        cells = "".join(f"<td class='n'>{'-' if t['kept'].get(s) is None else format(t['kept'][s], '.1%')}</td>"
                        for s in stages)
        mark = "" if t["released"] else " <span class='note'>(not released)</span>"
        rows.append(f"<tr><td>{escape(t['crawl'])}{mark}</td>{cells}</tr>")
    chart = trend_svg(trend, stages) if len(trend) > 1 else ""
    return chart + f"<table class='list'><tr><th>crawl</th>{head}</tr>{''.join(rows)}</table>"


def trend_svg(trend: list[dict], stages: list[str]) -> str:
    """Kept ratio (0-100%) per stage across crawls: one line per stage."""
    left, top, w, h = 50, 10, 620, 160
    step = w / max(len(trend) - 1, 1)
    out = [f"<svg class='trend' role='img' aria-label='kept ratio per stage across crawls' viewBox='0 0 900 "
           f"{h + 50}' width='900' height='{h + 50}'>"]
    for pct in (0, 50, 100):
        y = top + h * (1 - pct / 100)
        out.append(f"<line x1='{left}' x2='{left + w}' y1='{y}' y2='{y}' class='axis'/>"
                   f"<text x='{left - 6}' y='{y + 4}' text-anchor='end' class='tick'>{pct}%</text>")
    for i, t in enumerate(trend):
        out.append(f"<text x='{left + i * step:.1f}' y='{top + h + 18}' text-anchor='middle' class='tick'>"
                   f"{escape(t['crawl'].removeprefix('CC-MAIN-'))}</text>")
    for j, stage in enumerate(stages):
        color = STAGE_COLORS[j % len(STAGE_COLORS)]
        points = [(left + i * step, top + h * (1 - t["kept"][stage])) for i, t in enumerate(trend)
                  if t["kept"].get(stage) is not None]
        if len(points) > 1:
            out.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' "
                       f"points='{' '.join(f'{x:.1f},{y:.1f}' for x, y in points)}'/>")
        out += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{color}'><title>{escape(stage)}</title></circle>"
                for x, y in points]
        out.append(f"<text x='{left + w + 20}' y='{top + 12 + j * 15}' class='tick'><tspan style='fill:{color}'>■"
                   f"</tspan> {escape(stage)}</text>")
    out.append("</svg>")
    return "".join(out)


def _sample(view: dict, prefix: str, sample_id: str, trace: dict | None) -> str:
    crawl = view["crawl"]
    form = (f"<form method='get' action='{prefix}/crawl/{quote(crawl)}#sample'><input name='sample' "
            f"placeholder='sample id' value='{escape(sample_id)}' size='40'>"
            + (f"<input type='hidden' name='run' value='{escape(view['run']['run_id'])}'>" if view["run"] else "")
            + "<button>trace</button></form>")
    if not sample_id:
        return form
    if trace is None:
        return form + f"<p class='trace-missing'>Sample {escape(sample_id)} is not in the extract outputs of " \
                      f"{escape(crawl)}.</p>"
    o = trace["origin"]
    logs = _logs(view)
    lines = [f"<tr><th>warc</th><td colspan='2'><code>{escape(str(o['warc_filename']))}</code> offset "
             f"{o['warc_record_offset']} length {o['warc_record_length']}</td></tr>",
             f"<tr><th>page</th><td colspan='2'>{_external(o['page_url'])}</td></tr>",
             f"<tr><th>image</th><td colspan='2'>{_external(o['url'])}</td></tr>",
             f"<tr><th>alt</th><td colspan='2'>{escape(str(o['alt_text']))}</td></tr>"]
    for step in trace["steps"]:
        verdict = step["verdict"] + (f": {step['reason']}" if step["reason"] else "")
        stage = _shard_link(logs, step["stage"], trace["shard"], escape(step["stage"]))
        lines.append(f"<tr class='{escape(step['verdict'].replace(' ', '-'))}'><th>{stage}</th>"
                     f"<td>{escape(verdict)}</td><td><code>{escape(step['uri'])}</code></td></tr>")
    return form + (f"<p>Sample <b>{escape(trace['sample'])}</b>, shard {trace['shard']:05d}</p>"
                   f"<table class='trace'>{''.join(lines)}</table>")


def _external(url) -> str:
    url = str(url or "")
    if url.startswith(("http://", "https://")):
        return f"<a href='{escape(url)}' rel='noopener noreferrer nofollow'>{escape(url)}</a>"
    return escape(url)


def _release(view: dict) -> str:
    rel = view["release"]
    m = rel["manifest"]
    local = (f"<p>Local folder <code>{escape(rel['folder'])}</code>: " +
             (f"{m['rows']:,} rows in {m['shards']} shards, tag <code>{escape(str(m['tag']))}</code></p>"
              if m else "not published yet.</p>"))
    if not rel["hubs"]:
        return local + "<p>No hub upload recorded.</p>"
    rows = []
    for h in rel["hubs"]:
        base = f"{h['endpoint'].rstrip('/')}/datasets/{h['repo_id']}"
        link = f"{base}/tree/{quote(h['tag'], safe='')}" if h["kind"] == "huggingface" else base
        rows.append(f"<tr><td>{escape(h['kind'])}</td><td>{_external(link)}</td><td><code>{escape(h['tag'])}</code></td>"
                    f"<td><code>{escape(h['commit_id'][:12])}</code></td><td class='n'>{len(h['shards'])}</td>"
                    f"<td class='n'>{h['files']:,}</td></tr>")
    return local + ("<table class='list'><tr><th>hub</th><th>repo</th><th>tag</th><th>commit</th>"
                    "<th class='n'>shards</th><th class='n'>files</th></tr>" + "".join(rows) + "</table>")


def _alerts(view: dict) -> str:
    if not view["alerts"]:
        return "<p>No alert for this crawl.</p>"
    rows = "".join(f"<tr><td>{escape(str(a['created_at'])[:19])}</td><td><code>{escape(a['code'])}</code></td>"
                   f"<td>{'' if a['shard'] < 0 else format(a['shard'], '05d')}</td><td>{escape(a['stage'])}</td>"
                   f"<td>{escape(a['message'])}</td></tr>" for a in view["alerts"])
    return ("<table class='list'><tr><th>when (UTC)</th><th>code</th><th>shard</th><th>stage</th><th>what</th></tr>"
            + rows + "</table>")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def go_url(prefix: str, crawl: str, run: str | None) -> str:
    return f"{prefix}/crawl/{quote(crawl)}" + (f"?{urlencode({'run': run})}" if run else "")
