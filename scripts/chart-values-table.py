#!/usr/bin/env python3
"""The values table of the Helm chart's README, from the `## @param` comments of values.yaml.

values.yaml documents every key in the style of Bitnami's readme-generator:

    ## @section Title            starts a group (a heading in the README); further `##` lines are
                                 the group's introduction
    ## @param a.b.c Description  documents the key a.b.c; further `##` lines continue the text

A @param may name a whole object (e.g. `app.securityContext`): its keys need none of their own.
The default shown is the key's value in values.yaml, as JSON.

    scripts/chart-values-table.py            rewrites the table in charts/k8shmir/README.md
    scripts/chart-values-table.py --check    exits 1 with a diff when the README's table is stale
    scripts/chart-values-table.py --dump-json  prints values.yaml as this script reads it

Every run fails (exit 1) listing the keys without a @param and the @params without a key.
Standard library only; the YAML reader knows what values.yaml uses (block mappings, block
sequences of scalars, scalars, flow collections) and refuses the rest (exit 2).
"""

import argparse
import difflib
import json
import os
import re
import sys

START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"


class ParseError(Exception):
    pass


# ---- scalars and flow collections ---------------------------------------------------------------

BOOLS = {
    **{w: True for w in ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")},
    **{w: False for w in ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")},
}
INT = re.compile(r"^[-+]?[0-9]+$")
FLOAT = re.compile(r"^[-+]?([0-9]*\.[0-9]+|[0-9]+\.[0-9]*|[0-9]+)([eE][-+]?[0-9]+)?$")


def plain_scalar(text):
    """A plain (unquoted) YAML 1.1 scalar, as Helm's YAML reader types it."""
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in BOOLS:
        return BOOLS[text]
    if INT.match(text):
        return int(text)
    if FLOAT.match(text):
        return float(text)
    return text


def quoted(text, pos, lineno):
    """The quoted scalar starting at text[pos]; returns (value, position after it)."""
    q = text[pos]
    i = pos + 1
    out = []
    while i < len(text):
        c = text[i]
        if q == "'" and c == "'":
            if text[i + 1:i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        if q == '"' and c == "\\":
            out.append(text[i:i + 2])
            i += 2
            continue
        if q == '"' and c == '"':
            try:
                return json.loads('"' + "".join(out) + '"'), i + 1
            except ValueError as e:
                raise ParseError(f"line {lineno}: a double-quoted string this script cannot read: {e}")
        out.append(c)
        i += 1
    raise ParseError(f"line {lineno}: unterminated {q}-quoted string")


def strip_comment(text):
    """A plain value without its trailing ` # comment`."""
    m = re.search(r"\s#", text)
    return (text[:m.start()] if m else text).strip()


class Flow:
    """A flow collection ([a, b], {k: v}) or a scalar, on one line."""

    def __init__(self, text, lineno):
        self.text, self.pos, self.lineno = text, 0, lineno

    def error(self, what):
        return ParseError(f"line {self.lineno}: {what} in {self.text!r}")

    def skip(self):
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def value(self, stops):
        self.skip()
        if self.pos >= len(self.text):
            raise self.error("a value missing")
        c = self.text[self.pos]
        if c == "[":
            self.pos += 1
            items = []
            self.skip()
            if self.text[self.pos:self.pos + 1] == "]":
                self.pos += 1
                return items
            while True:
                items.append(self.value(",]"))
                self.skip()
                c = self.text[self.pos:self.pos + 1]
                self.pos += 1
                if c == "]":
                    return items
                if c != ",":
                    raise self.error("',' or ']' expected")
        if c == "{":
            self.pos += 1
            items = {}
            self.skip()
            if self.text[self.pos:self.pos + 1] == "}":
                self.pos += 1
                return items
            while True:
                key = self.value(":")
                self.skip()
                if self.text[self.pos:self.pos + 1] != ":":
                    raise self.error("':' expected")
                self.pos += 1
                items[str(key)] = self.value(",}")
                self.skip()
                c = self.text[self.pos:self.pos + 1]
                self.pos += 1
                if c == "}":
                    return items
                if c != ",":
                    raise self.error("',' or '}' expected")
        if c in "\"'":
            v, self.pos = quoted(self.text, self.pos, self.lineno)
            return v
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            if self.text[self.pos] == ":" and ":" in stops:
                break
            self.pos += 1
        return plain_scalar(self.text[start:self.pos].strip())


def inline_value(text, lineno):
    """The value after `key:` on the same line."""
    text = text.strip()
    if text[:1] in ("[", "{"):
        f = Flow(text, lineno)
        v = f.value("")
        rest = text[f.pos:].strip()
        if rest and not rest.startswith("#"):
            raise ParseError(f"line {lineno}: text after a flow collection: {rest!r}")
        return v
    if text[:1] in ("\"", "'"):
        v, end = quoted(text, 0, lineno)
        rest = text[end:].strip()
        if rest and not rest.startswith("#"):
            raise ParseError(f"line {lineno}: text after a quoted string: {rest!r}")
        return v
    if text[:1] in ("|", ">", "&", "*", "!"):
        raise ParseError(f"line {lineno}: block scalars, anchors, aliases and tags are not supported")
    return plain_scalar(strip_comment(text))


# ---- values.yaml: the tree and the @param comments ------------------------------------------------

KEY = re.compile(r"^( *)([A-Za-z0-9_][A-Za-z0-9_.-]*|\"[^\"]+\"|'[^']+')\s*:(?:\s+(.*)|)$")
ITEM = re.compile(r"^( *)- (.*)$")


def parse_values(path):
    """(values, params, sections, key_lines): the tree, {key: (description, lineno)} in file order,
    the sections [(title, intro, [keys])] and {key: lineno}."""
    values = {}
    key_lines = {}
    params = {}
    sections = [("Parameters", "", [])]
    stack = [(0, values, "")]  # (indent, mapping, dotted path) of the open mappings
    pending = None  # the key whose value is on the following lines: (indent, parent, name, path)
    text_target = None  # a list receiving continuation lines of a @param or @section

    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for lineno, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("##"):
            body = stripped[2:].strip()
            if body.startswith("@section"):
                title = body[len("@section"):].strip()
                if not title:
                    raise ParseError(f"line {lineno}: @section without a title")
                intro = []
                sections.append((title, intro, []))
                text_target = intro
            elif body.startswith("@param"):
                m = re.match(r"^@param\s+(\S+)\s+(.*)$", body)
                if not m:
                    raise ParseError(f"line {lineno}: '## @param <key> <description>' expected")
                key, desc = m.group(1), m.group(2).strip()
                if key in params:
                    raise ParseError(f"line {lineno}: a second @param for {key} "
                                     f"(the first on line {params[key][1]})")
                words = [desc]
                params[key] = (words, lineno)
                sections[-1][2].append(key)
                text_target = words
            elif body.startswith("@"):
                raise ParseError(f"line {lineno}: unknown annotation {body.split()[0]}")
            elif body and text_target is not None:
                text_target.append(body)
            else:
                text_target = None
            continue
        if not stripped or stripped.startswith("#"):
            text_target = None
            continue
        text_target = None
        indent = len(line) - len(line.lstrip(" "))
        if "\t" in line[:indent + 1]:
            raise ParseError(f"line {lineno}: tabs in the indentation")

        m_item = ITEM.match(line)
        if m_item:
            if pending is None or indent < pending[0]:
                raise ParseError(f"line {lineno}: a sequence item without its key")
            p_indent, parent, name, p_path = pending
            if not isinstance(parent.get(name), list):
                parent[name] = []
            item = m_item.group(2)
            if KEY.match(" " * (indent + 2) + item) and not item[:1] in "\"'[{":
                raise ParseError(f"line {lineno}: mappings in block sequences are not supported")
            parent[name].append(inline_value(item, lineno))
            continue

        m = KEY.match(line)
        if not m:
            raise ParseError(f"line {lineno}: 'key: value' expected: {line!r}")
        # Leaving nested mappings: pop to the parent whose indentation is smaller.
        if pending is not None:
            p_indent, parent, name, p_path = pending
            if indent > p_indent and name not in parent:
                child = {}
                parent[name] = child
                stack.append((indent, child, p_path))
            elif name not in parent:
                parent[name] = None  # `key:` alone is null
            pending = None
        while len(stack) > 1 and indent < stack[-1][0]:
            stack.pop()
        if indent != stack[-1][0]:
            raise ParseError(f"line {lineno}: unexpected indentation")
        _, container, path_prefix = stack[-1]
        name = m.group(2).strip("\"'")
        full = f"{path_prefix}.{name}" if path_prefix else name
        if name in container:
            raise ParseError(f"line {lineno}: duplicate key {full}")
        key_lines[full] = lineno
        rest = m.group(3)
        if rest is None or rest.strip() == "" or rest.strip().startswith("#"):
            pending = (indent, container, name, full)
        else:
            container[name] = inline_value(rest, lineno)
    if pending is not None:
        pending[1].setdefault(pending[2], None)
    params = {k: (" ".join(w), n) for k, (w, n) in params.items()}
    sections = [(t, " ".join(intro), keys) for t, intro, keys in sections if keys]
    return values, params, sections, key_lines


def walk(tree, prefix=""):
    """Every (dotted key, value), parents before children."""
    for k, v in tree.items():
        path = f"{prefix}.{k}" if prefix else k
        yield path, v
        if isinstance(v, dict) and v:
            yield from walk(v, path)


def lookup(tree, key):
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def problems(values, params, key_lines):
    out = []
    keys = dict(walk(values))
    for key, (_, lineno) in params.items():
        if key not in keys:
            out.append(f"values.yaml:{lineno}: @param {key}: no such key in values.yaml")
    for key, value in keys.items():
        if isinstance(value, dict) and value:
            continue  # an object: its leaves need the @params (or the object one of its own)
        parts = key.split(".")
        if not any(".".join(parts[:i]) in params for i in range(1, len(parts) + 1)):
            out.append(f"values.yaml:{key_lines.get(key, '?')}: {key} has no '## @param {key} <description>' "
                       "(nor an object above it)")
    return out


# ---- the table ----------------------------------------------------------------------------------

def cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def default_text(value):
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return "`" + cell(text) + "`"


def table(values, params, sections):
    out = [START,
           "<!-- Generated by scripts/chart-values-table.py from the '## @param' comments of "
           "values.yaml: edit those, then run it. -->"]
    for title, intro, keys in sections:
        out += ["", f"### {title}", ""]
        if intro:
            out += [intro, ""]
        out += ["| Key | Description | Default |", "| --- | --- | --- |"]
        for key in keys:
            out.append(f"| `{key}` | {cell(params[key][0])} | {default_text(lookup(values, key))} |")
    out += ["", END]
    return "\n".join(out)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chart", default=os.path.normpath(os.path.join(here, "..", "charts", "k8shmir")),
                    help="the chart's directory (default: charts/k8shmir)")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 with a diff when README.md's table is stale")
    ap.add_argument("--dump-json", action="store_true",
                    help="print values.yaml as read, as JSON, and exit")
    args = ap.parse_args()
    values_path = os.path.join(args.chart, "values.yaml")
    readme_path = os.path.join(args.chart, "README.md")
    try:
        values, params, sections, key_lines = parse_values(values_path)
    except (OSError, ParseError) as e:
        print(f"chart-values-table: {values_path}: {e}", file=sys.stderr)
        return 2
    if args.dump_json:
        print(json.dumps(values, indent=2, sort_keys=True))
        return 0
    errors = problems(values, params, key_lines)
    if errors:
        print("chart-values-table: values.yaml is not fully documented:", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1
    try:
        with open(readme_path, encoding="utf-8") as f:
            readme = f.read()
    except OSError as e:
        print(f"chart-values-table: {e}", file=sys.stderr)
        return 2
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        print(f"chart-values-table: {readme_path} lacks the markers {START} ... {END}",
              file=sys.stderr)
        return 2
    current = readme[start:end + len(END)]
    wanted = table(values, params, sections)
    if current == wanted:
        print(f"chart-values-table: {readme_path}: the table is up to date "
              f"({len(params)} parameters)")
        return 0
    if args.check:
        diff = difflib.unified_diff(current.split("\n"), wanted.split("\n"),
                                    "README.md (now)", "README.md (from values.yaml)", lineterm="")
        print("\n".join(diff))
        print(f"chart-values-table: {readme_path}: the values table is stale; run "
              "scripts/chart-values-table.py", file=sys.stderr)
        return 1
    with open(readme_path, "w", encoding="utf-8") as f:
        f.write(readme[:start] + wanted + readme[end + len(END):])
    print(f"chart-values-table: {readme_path}: table rewritten ({len(params)} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
