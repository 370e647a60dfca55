"""Benchmark report: Markdown tables and a self-contained HTML page.

``report(["results.jsonl"], "report/")`` writes

* ``report/results.md``: per dataset, one row per (task, method) with mean +- std
  (sample std, ddof=1; 0 for a single value) of PSNR, SSIM, LPIPS and the mean
  NFE, seconds per image and peak memory, over images and seeds;
* ``report/index.html``: the same tables, image grids (ground truth |
  measurement | each method, from rows saved with ``save_images``) as data URIs,
  and two inline SVG scatter plots (PSNR vs NFE, LPIPS vs seconds per image), one
  point per (task, method).

A method is ``solver`` (``+ prior``) (``, N steps`` when steps were set; ``,
<dtype>`` when not float32; `` (baseline)`` for the methods of
:data:`~.baselines.BASELINES`, which run without a prior); a table is a dataset
at one size (``, resize`` for ``crop="resize"``). Files ``<stem>.rank<r>.jsonl``
next to a given ``<stem>.jsonl`` (sharded runs) are merged. Rows of distinct image files are
never merged, even when their dataset and image names agree (a warning says
so, as they are then pooled in one table).
"""

from __future__ import annotations

import base64
import html
import math
import warnings
from collections import defaultdict
from pathlib import Path

from ..errors import ConfigError
from .baselines import is_baseline
from .runner import ALL_METRICS, keyed_rows

_LABELS = {"psnr": "PSNR ↑", "ssim": "SSIM ↑", "lpips_alex": "LPIPS-Alex ↓", "lpips_vgg": "LPIPS-VGG ↓"}
_FORMAT = {"psnr": "{:.2f} ± {:.2f}", "ssim": "{:.4f} ± {:.4f}", "lpips_alex": "{:.4f} ± {:.4f}", "lpips_vgg": "{:.4f} ± {:.4f}"}
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]


def method(row: dict) -> str:
    """Display name of a row's method: ``solver [+ prior] [, N steps] [, dtype] [ (baseline)]``."""
    name = row["solver"] if row.get("prior", "none") == "none" else f"{row['solver']} + {row['prior']}"
    name = name if row.get("steps") is None else f"{name}, {row['steps']} steps"
    name = name if row.get("dtype", "float32") == "float32" else f"{name}, {row['dtype']}"
    baseline = is_baseline(row["solver"]) and row.get("prior", "none") == "none"  # not a custom solver of that name
    return f"{name} (baseline)" if baseline else name


def _table(row: dict) -> str:
    """Table of a row: ``<dataset> (<size> px[, resize])``."""
    crop = row["protocol"].get("crop", "center")
    return f"{row['dataset']} ({row['protocol']['size']} px{'' if crop == 'center' else f', {crop}'})"


def load_rows(paths: list[str | Path]) -> list[dict]:
    """Rows of the given JSON-lines files and their ``.rank<r>`` shards; duplicates (same key) keep the last.

    Each row gets ``_dir``, the folder of its file (saved image paths are relative to it).
    """
    rows = {}
    for p in map(Path, paths):
        files = ([p] if p.is_file() else []) + sorted(p.parent.glob(f"{p.stem}.rank*{p.suffix}"))
        if not files:
            raise ConfigError(f"no results file at {p} (nor its .rank<r> shards); run `pnp-restore bench run` first")
        found = {key: {**r, "_dir": str(f.parent)} for f in files for key, r in keyed_rows(f).items()}
        if not found:
            raise ConfigError(f"{p} holds no benchmark rows; pass the --out file of a `pnp-restore bench run` that finished a row")
        rows.update(found)
    _warn_same_names(rows.values())
    return list(rows.values())


def _warn_same_names(rows) -> None:
    """Warn when one (dataset, image) name stands for several image files: their rows are pooled in one table."""
    shas: dict[tuple, set] = defaultdict(set)
    for r in rows:
        shas[(r["dataset"], r["image"])].add(r.get("sha256"))
    clashes = sorted(k for k, v in shas.items() if len(v - {None}) > 1)
    if clashes:
        dataset, image = clashes[0]
        warnings.warn(
            f"{len(clashes)} image name(s) stand for different files (e.g. {dataset}/{image}); their rows are kept but "
            "pooled in one table: give the dataset folders distinct names to report them apart",
            stacklevel=3,
        )


def _mean_std(values: list[float]) -> tuple[float, float] | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None
    m = sum(v) / len(v)
    return m, (math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0)


def summarize(rows: list[dict], pooled: bool = False) -> dict[str, list[dict]]:
    """{"<dataset> (<size> px)": [{task, method, n, <metric>: (mean, std) | None, nfe, time_s, peak_mem_mb, errors}]};
    with ``pooled`` one group ``"all"`` over every dataset and size."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        where = "all" if pooled else _table(r)
        groups[(where, r["task"], method(r))].append(r)
    out: dict[str, list[dict]] = defaultdict(list)
    for (dataset, task, meth), rs in sorted(groups.items()):
        ok = [r for r in rs if not r.get("error")]
        entry = {"task": task, "method": meth, "n": len(ok), "errors": sorted({r["error"] for r in rs if r.get("error")})}
        for m in ALL_METRICS:
            entry[m] = _mean_std([r.get(m) for r in ok])
        for m in ("nfe", "time_s", "peak_mem_mb"):
            ms = _mean_std([r.get(m) for r in ok])
            entry[m] = ms[0] if ms else None
        out[dataset].append(entry)
    return dict(out)


def _metrics_present(summary: dict) -> list[str]:
    return [m for m in ALL_METRICS if any(e[m] for es in summary.values() for e in es)]


def _cells(e: dict, metrics: list[str]) -> list[str]:
    cells = [e["task"], e["method"], str(e["n"])]
    cells += [_FORMAT[m].format(*e[m]) if e[m] else "–" for m in metrics]
    cells += [
        "–" if e["nfe"] is None else f"{e['nfe']:.0f}",
        "–" if e["time_s"] is None else f"{e['time_s']:.3g}",
        "–" if e["peak_mem_mb"] is None else f"{e['peak_mem_mb']:.0f}",
    ]
    if e["errors"]:
        cells[1] += " (error: " + "; ".join(e["errors"])[:120] + ")"
    return cells


def _header(metrics: list[str]) -> list[str]:
    return ["task", "method", "n", *(_LABELS[m] for m in metrics), "NFE", "s / image", "peak MB"]


def markdown(summary: dict) -> str:
    """Markdown tables, one per dataset."""
    metrics = _metrics_present(summary)
    lines = []
    for dataset, entries in summary.items():
        head = _header(metrics)
        lines += [f"### {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in _cells(e, metrics)) + " |" for e in entries]
        lines.append("")
    return "\n".join(lines)


def _svg_scatter(points: list[tuple[float, float, str, str]], xlabel: str, ylabel: str, logx: bool) -> str:
    """A small inline SVG scatter plot; points are (x, y, series, tooltip)."""
    pts = [(math.log10(1 + x) if logx else x, y, s, t) for x, y, s, t in points if x is not None and y is not None]
    if not pts:
        return "<p>(no data)</p>"
    w, h, pad = 420, 240, 46
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    def sx(v: float) -> float:
        return pad + (v - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(v: float) -> float:
        return h - pad - (v - y0) / (y1 - y0) * (h - 2 * pad)
    series = sorted({p[2] for p in pts})
    color = {s: _COLORS[i % len(_COLORS)] for i, s in enumerate(series)}
    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w + 220}" height="{h}" font-size="11" font-family="sans-serif">']
    el.append(f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" fill="none" stroke="#999"/>')
    for v, anchor in ((x0, "start"), (x1, "end")):
        label = f"{10 ** v - 1:.3g}" if logx else f"{v:.3g}"
        el.append(f'<text x="{sx(v):.1f}" y="{h - pad + 14}" text-anchor="{anchor}">{label}</text>')
    for v in (y0, y1):
        el.append(f'<text x="{pad - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    el.append(f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">{html.escape(xlabel)}</text>')
    el.append(f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" text-anchor="middle">{html.escape(ylabel)}</text>')
    for x, y, s, t in pts:
        el.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{color[s]}"><title>{html.escape(t)}</title></circle>')
    for i, s in enumerate(series):
        el.append(f'<circle cx="{w + 10}" cy="{pad + 14 * i}" r="4" fill="{color[s]}"/>')
        el.append(f'<text x="{w + 18}" y="{pad + 14 * i + 4}">{html.escape(s)}</text>')
    return "\n".join(el + ["</svg>"])


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _grids(rows: list[dict], per_task: int) -> list[str]:
    """HTML image grids: per (dataset, task), up to ``per_task`` images, first seed only."""
    by: dict[tuple, dict] = defaultdict(dict)
    first_seed = min((r["seed"] for r in rows), default=0)
    for r in rows:
        if "images" in r and r["seed"] == first_seed:
            by[(r["dataset"], r["task"], r["image"], r.get("sha256") or "")][method(r)] = r
    out = []
    for (dataset, task), keys in sorted(_group_images(by).items()):
        methods = sorted({m for k in keys for m in by[k]})
        out.append(f"<h3>{html.escape(dataset)} · {html.escape(task)}</h3><table class=grid><tr><th>ground truth</th><th>measurement</th>")
        out += [f"<th>{html.escape(m)}</th>" for m in methods]
        out.append("</tr>")
        for k in keys[:per_task]:
            first = next(iter(by[k].values()))
            base = Path(first["_dir"])
            cells = [first["images"]["gt"], first["images"]["y"]]
            cells += [by[k][m]["images"].get("x") if m in by[k] else None for m in methods]
            tds = []
            for m, c in zip(["gt", "y", *methods], cells):
                r = by[k].get(m)
                cap = f"<br>{r['psnr']:.2f} dB" if r and r.get("psnr") is not None else ""
                tds.append(f'<td><img src="{_data_uri(base / c)}">{cap}</td>' if c and (base / c).is_file() else "<td>–</td>")
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</table>")
    return out


def _group_images(by: dict) -> dict[tuple, list[tuple]]:
    g: dict[tuple, list[tuple]] = defaultdict(list)
    for k in sorted(by):
        g[k[:2]].append(k)
    return g


def _points(entries: list[dict], x: str, y: str) -> list[tuple]:
    return [(e[x], e[y] and e[y][0], e["method"], f"{e['task']} {e['method']}") for e in entries]


def _by_task(rows: list[dict]) -> dict[str, list[dict]]:
    """{task: summary entries pooled over datasets and sizes}."""
    out: dict[str, list[dict]] = defaultdict(list)
    for e in summarize(rows, pooled=True).get("all", []):
        out[e["task"]].append(e)
    return dict(out)


def html_page(summary: dict, rows: list[dict], per_task: int = 4) -> str:
    """Self-contained HTML: tables, plots and image grids."""
    metrics = _metrics_present(summary)
    parts = [
        "<!doctype html><meta charset=utf-8><title>pnp-restore benchmark</title>",
        (
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}table.grid td{text-align:center}"
            "img{image-rendering:pixelated;width:128px}</style>"
        ),
        "<h1>pnp-restore benchmark</h1>",
    ]
    for dataset, entries in summary.items():
        parts.append(f"<h2>{html.escape(dataset)}</h2><table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in _header(metrics)) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(e, metrics)) + "</tr>" for e in entries]
        parts.append("</table>")
    parts.append("<h2>Quality vs cost</h2><p>One panel per task; a point is a method's mean over all datasets.</p>")
    for task, entries in _by_task(rows).items():
        parts.append(f"<h3>{html.escape(task)}</h3>")
        parts.append(_svg_scatter(_points(entries, "nfe", "psnr"), "NFE (log scale, 1 + NFE)", "PSNR (dB)", logx=True))
        if "lpips_alex" in metrics:
            parts.append(_svg_scatter(_points(entries, "time_s", "lpips_alex"), "s / image (log scale, 1 + s)", "LPIPS-Alex", logx=True))
    grids = _grids(rows, per_task)
    if grids:
        parts += ["<h2>Images</h2>", *grids]
    return "\n".join(parts) + "\n"


def report(results: str | Path | list, out_dir: str | Path = "report", per_task: int = 4) -> dict[str, Path]:
    """Write ``results.md`` and ``index.html`` into ``out_dir``; return their paths."""
    rows = load_rows([results] if isinstance(results, (str, Path)) else list(results))
    summary = summarize(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "results.md", "html": out / "index.html"}
    paths["markdown"].write_text(markdown(summary))
    paths["html"].write_text(html_page(summary, rows, per_task))
    return paths


__all__ = ["report", "summarize", "markdown", "html_page", "load_rows", "method"]
