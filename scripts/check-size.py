#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks that the C++ sources of core/ and plugin/ stay small enough to read in one
sitting: no file over MAX_FILE_LINES lines and no function body over MAX_FUNCTION_LINES
lines (from the first line of its signature to its closing brace; lambdas count as part
of the function that holds them). Exceptions are listed below with the reason.

Usage: scripts/check-size.py [--list N]   (--list: also print the N longest functions)
Exit status 1 when a limit is exceeded, naming the file, line and function."""
import pathlib
import re
import sys

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
# file -> reason: longer files or functions that are one thing and read best whole.
EXCEPTIONS = {}

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = ["core", "plugin"]


def strip(text):
    """The source with comments, string and character literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == 'R' and text.startswith('R"', i) and (i == 0 or not text[i - 1].isalnum()):
            k = text.find("(", i)
            delim = ")" + text[i + 2:k] + '"'
            j = text.find(delim, k)
            j = n if j < 0 else j + len(delim)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(" " * (j + 1 - i))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    """(name, first line, last line) of each function body at namespace or class scope."""
    text = strip(path.read_text())
    text = re.sub(r"^[ \t]*#.*$", lambda m: " " * len(m.group(0)), text, flags=re.M)
    stack = []  # kinds of the open braces: ns, class, func, other
    header_start = 0
    found = []
    for i, c in enumerate(text):
        if c in ";":
            if not stack or stack[-1][0] in ("ns", "class"):
                header_start = i + 1
        elif c == "{":
            header = text[header_start:i]
            if stack and stack[-1][0] in ("func", "other"):
                kind = "other"
            elif re.search(r"\bnamespace\b|\bextern\s*$", header) or header.strip() == 'extern':
                kind = "ns"
            elif re.search(r"\b(class|struct|union|enum)\b[^()]*$", header):
                kind = "class"
            elif ")" in header and not re.search(r"=\s*$", header):
                kind = "func"
            else:
                kind = "other"
            stack.append((kind, header_start, header))
            if kind in ("ns", "class"):
                header_start = i + 1
        elif c == "}":
            if not stack:
                continue
            kind, start, header = stack.pop()
            if kind == "func":
                first = text.count("\n", 0, start + len(header) - len(header.lstrip())) + 1
                last = text.count("\n", 0, i) + 1
                name = re.findall(r"([~\w:]+)\s*\(", header)
                found.append((name[0] if name else "?", first, last))
            if not stack or stack[-1][0] in ("ns", "class"):
                header_start = i + 1
    return found


def main(argv):
    listed = int(argv[argv.index("--list") + 1]) if "--list" in argv else 0
    problems, all_functions = [], []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".cpp", ".h"):
                continue
            rel = path.relative_to(ROOT).as_posix()
            lines = path.read_text().count("\n")
            if lines > MAX_FILE_LINES and rel not in EXCEPTIONS:
                problems.append(f"{rel}: {lines} lines (at most {MAX_FILE_LINES}); split it")
            for name, first, last in functions(path):
                length = last - first + 1
                all_functions.append((length, f"{rel}:{first} {name}"))
                key = f"{rel}:{name}"
                if length > MAX_FUNCTION_LINES and key not in EXCEPTIONS:
                    problems.append(f"{rel}:{first}: {name} is {length} lines "
                                    f"(at most {MAX_FUNCTION_LINES}); split it into named steps")
    for length, where in sorted(all_functions, reverse=True)[:listed]:
        print(f"{length:5d} {where}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
