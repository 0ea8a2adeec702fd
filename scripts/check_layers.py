#!/usr/bin/env python3
"""Checks kdist's include graph against src/LAYERS.

Every file of a layer (src/<layer>/ and its public headers in include/kdist/) may include its
own layer's headers, those of the layers listed before it, and src/base/; never a later layer's.
src/base/ includes no layer. Only comm includes c10d. No source sits in src/'s root.

    python3 scripts/check_layers.py [repository root]

Prints each violation as `[kdist.layers] FILE: ...` and exits 1 if there is one.
"""
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.MULTILINE)


def read_layers(root):
    """The layers bottom up, and which layer owns each public header (path below include/)."""
    order, owner_of = [], {}
    for line in (root / "src" / "LAYERS").read_text().splitlines():
        match = re.match(r"^([a-z_]+):(.*)$", line)
        if not match:
            continue
        layer, headers = match.group(1), match.group(2).split()
        order.append(layer)
        for header in headers:
            owner_of["kdist/" + header] = layer
    return order, owner_of


def owner(include, owner_of, layers):
    """The layer an include belongs to: 'base', a layer, or None (not kdist's)."""
    if include.startswith("kdist/"):
        if include in owner_of:
            return owner_of[include]
        for header, layer in owner_of.items():
            if header.endswith("/") and include.startswith(header):
                return layer
        return "umbrella" if include == "kdist/kdist.h" else "unknown"
    first = include.split("/")[0]
    if first == "base":
        return "base"
    return first if first in layers and "/" in include else None


def files_of(root, layer, owner_of):
    """The sources and public headers of a layer."""
    found = sorted(p for p in (root / "src" / layer).rglob("*") if p.suffix in (".h", ".cpp"))
    for header, header_layer in owner_of.items():
        if header_layer != layer:
            continue
        path = root / "include" / header
        found += sorted(path.rglob("*.h")) if header.endswith("/") else [path]
    return found


def check(root):
    order, owner_of = read_layers(root)
    rank = {layer: i for i, layer in enumerate(order)}
    rank["base"] = -1
    problems = []
    for stray in sorted((root / "src").glob("*.*")):
        if stray.suffix in (".h", ".cpp"):
            problems.append(f"{stray.relative_to(root)}: in src/'s root; put it in its layer's folder")
    for layer in ["base"] + order:
        for path in files_of(root, layer, owner_of):
            name = path.relative_to(root)
            for _, include in INCLUDE.findall(path.read_text()):
                if "c10d" in include and layer != "comm":
                    problems.append(f"{name}: includes {include}: only comm uses c10d")
                target = owner(include, owner_of, rank)
                if target is None:
                    continue
                if target in ("umbrella", "unknown"):
                    problems.append(f"{name}: includes {include}, which no layer in src/LAYERS owns")
                elif rank[target] > rank[layer]:
                    problems.append(f"{name}: includes {include}: {layer} may not include {target}, "
                                    f"a layer above it (src/LAYERS: {' < '.join(order)})")
    return problems


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent)
    problems = check(root.resolve())
    for problem in problems:
        print(f"[kdist.layers] {problem}")
    if not problems:
        print("[kdist.layers] every include follows src/LAYERS")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
