#!/usr/bin/env python3
"""No function of kdist's over 80 lines (the style guide's rule: one that does several things is
split). Reads the .cpp files under src/, tools/ and bench/: a definition starts at a line in
column 0 that opens a brace after a parameter list, and ends at the `}` in column 0 after it.

    python3 scripts/check_function_length.py [repository root]
"""
import pathlib
import re
import sys

LIMIT = 80
HEAD = re.compile(r"^[A-Za-z_][^;#=]*\(")         # a definition's first line, in column 0
OPENS = re.compile(r"\)[^;]*\{\s*(//.*)?$")        # ... and the line whose brace opens its body
NOT_FUNCTIONS = ("namespace", "struct", "class", "enum", "union", "extern")


def long_functions(path):
    lines = path.read_text().splitlines()
    found, start = [], None
    for number, line in enumerate(lines, 1):
        if start is None:
            if HEAD.match(line) and not line.startswith(NOT_FUNCTIONS):
                for ahead in range(number - 1, min(number + 5, len(lines))):
                    if OPENS.search(lines[ahead]):
                        start = number
                        break
                    if lines[ahead].rstrip().endswith((";", "}")):
                        break
        elif line.startswith("}"):
            length = number - start + 1
            if length > LIMIT:
                found.append((start, length, lines[start - 1].strip()))
            start = None
    return found


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent).resolve()
    problems = []
    for folder in ("src", "tools", "bench"):
        for path in sorted((root / folder).rglob("*.cpp")):
            for start, length, text in long_functions(path):
                problems.append(f"{path.relative_to(root)}:{start}: {length} lines, over {LIMIT}: {text}")
    for problem in problems:
        print(f"[kdist.style] {problem}")
    if not problems:
        print(f"[kdist.style] no function over {LIMIT} lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
