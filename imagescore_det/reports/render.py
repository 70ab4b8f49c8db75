"""Documentation whose numbers come from committed data: rewrite the marked blocks of a page.

A page marks what the data writes, and this module rewrites it from the file (CSV or JSON) that
holds it, so a number on a page cannot drift from its file:

``<!-- table: file=study/summary.csv; columns=arm:arm,ap50_mean:AP50; where=data_seed:pooled;
format=.2f -->`` ... ``<!-- end table -->``
    a Markdown table of those CSV columns (``name:Header``; ``name`` alone keeps its name as the
    header) over the rows that match every ``column:value`` of ``where``;
``<!-- number: file=study/summary.csv; where=arm:imagescore,data_seed:pooled;
column=delta_vs_control; format=+.2f -->+1.23<!-- end number -->``
    one value in running text; for a JSON file, ``key=a.b.0`` walks the object instead of
    ``where``/``column``.

``file`` is relative to the page's folder. ``format`` is a Python format spec for numeric cells
(default ``.2f``; integer cells are kept as written unless the spec is an integer one, ``,d``); a
table's ``formats=name:spec,...`` overrides it for those columns; empty cells stay empty and text
cells are kept as they are. ``python -m
imagescore_det.reports.render PAGE ...`` rewrites the pages; ``--check`` rewrites nothing and exits 1
when a page differs from its rendering (CI runs it).
"""

import argparse
import csv
import difflib
import json
import os
import re
import sys
from typing import Dict, List, Mapping, Sequence

from ..utils.io import atomic_write

__all__ = ["render_page", "render_file", "main"]

_BLOCK = re.compile(
    r"(?P<open><!-- (?P<kind>table|number): (?P<spec>.*?) -->)(?P<body>.*?)"
    r"(?P<close><!-- end (?P=kind) -->)",
    re.DOTALL,
)


class RenderError(ValueError):
    """A marker that cannot be rendered: the message names the page, the marker and the cause."""


def _parse_spec(spec: str) -> Dict[str, str]:
    fields = {}
    for part in spec.split(";"):
        part = " ".join(part.split())
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise RenderError("expected key=value, got %r" % part)
        fields[key.strip()] = value.strip()
    if "file" not in fields:
        raise RenderError("no file= in the marker")
    return fields


def _pairs(text: str) -> List[List[str]]:
    return [item.split(":", 1) for item in text.split(",") if item.strip()]


def _read_csv(path: str) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _matching(rows: Sequence[Mapping[str, str]], where: str, path: str) -> List[Mapping[str, str]]:
    conditions = _pairs(where)
    for condition in conditions:
        if len(condition) != 2:
            raise RenderError("where= needs column:value pairs, got %r" % ":".join(condition))
        if rows and condition[0] not in rows[0]:
            raise RenderError("%s has no column %r" % (path, condition[0]))
    return [row for row in rows if all(row[k] == v for k, v in conditions)]


def _cell(value, spec: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, int) or re.fullmatch(r"-?\d+", str(value).strip()):
        # integers (seeds, iterations, counts) as written, unless an integer format (",d") is asked for
        return format(int(value), spec) if spec.endswith("d") else str(value).strip()
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def _table(fields: Mapping[str, str], path: str) -> str:
    rows = _read_csv(path)
    columns = [(pair[0], pair[-1]) for pair in _pairs(fields.get("columns", ""))] or [
        (name, name) for name in (rows[0] if rows else [])
    ]
    formats = _pairs(fields.get("formats", ""))
    if any(len(pair) != 2 for pair in formats):
        raise RenderError("formats= needs column:spec pairs, got %r" % fields["formats"])
    formats = dict(formats)
    for name in [name for name, _ in columns] + list(formats):
        if rows and name not in rows[0]:
            raise RenderError("%s has no column %r" % (path, name))
    chosen = _matching(rows, fields.get("where", ""), path)
    if not chosen:
        raise RenderError("no row of %s matches where=%s" % (path, fields.get("where", "")))
    spec = fields.get("format", ".2f")
    lines = [
        "| " + " | ".join(header for _, header in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += [
        "| " + " | ".join(_cell(row[name], formats.get(name, spec)) for name, _ in columns) + " |"
        for row in chosen
    ]
    return "\n" + "\n".join(lines) + "\n"


def _number(fields: Mapping[str, str], path: str) -> str:
    spec = fields.get("format", ".2f")
    if path.endswith(".json"):
        with open(path) as f:
            value = json.load(f)
        for step in fields.get("key", "").split("."):
            try:
                value = value[int(step)] if isinstance(value, list) else value[step]
            except (KeyError, IndexError, ValueError, TypeError):
                raise RenderError("%s has no key %r" % (path, fields.get("key"))) from None
        return _cell(value, spec)
    rows = _matching(_read_csv(path), fields.get("where", ""), path)
    if len(rows) != 1:
        raise RenderError(
            "where=%s matches %d rows of %s, not one" % (fields.get("where", ""), len(rows), path)
        )
    column = fields.get("column", "")
    if column not in rows[0]:
        raise RenderError("%s has no column %r" % (path, column))
    return _cell(rows[0][column], spec)


def render_page(text: str, folder: str, page: str = "page") -> str:
    """``text`` with every marked block rewritten from its file (paths relative to ``folder``)."""

    def rewrite(match) -> str:
        try:
            fields = _parse_spec(match["spec"])
            path = os.path.join(folder, fields["file"])
            if not os.path.isfile(path):
                raise RenderError("no file %s" % path)
            body = _table(fields, path) if match["kind"] == "table" else _number(fields, path)
        except RenderError as error:
            raise RenderError("%s: %s: %s" % (page, match["open"], error)) from None
        return match["open"] + body + match["close"]

    return _BLOCK.sub(rewrite, text)


def render_file(page: str, check: bool = False) -> bool:
    """Render ``page`` in place (or, with ``check``, only compare); True when it was up to date."""
    with open(page) as f:
        text = f.read()
    rendered = render_page(text, os.path.dirname(os.path.abspath(page)), page)
    if rendered == text:
        return True
    if check:
        sys.stdout.writelines(
            difflib.unified_diff(
                text.splitlines(True), rendered.splitlines(True), page, page + " (rendered)"
            )
        )
    else:
        with atomic_write(page) as f:
            f.write(rendered)
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "pages", nargs="+", help="Markdown pages to render, e.g. docs/*.md README.md"
    )
    parser.add_argument(
        "--check", action="store_true", help="rewrite nothing; exit 1 if a page is not up to date"
    )
    args = parser.parse_args(argv)
    try:
        stale = [page for page in args.pages if not render_file(page, check=args.check)]
    except RenderError as error:
        print("error: %s" % error, file=sys.stderr)
        return 2
    for page in stale:
        print("%s %s" % ("differs from its rendering:" if args.check else "rewrote", page))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
