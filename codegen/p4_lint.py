"""A p4c-free check of generated P4 programs (:func:`lint_p4`): what a template mistake
leaves behind, found without a compiler."""

from __future__ import annotations

import re

__all__ = ["lint_p4"]


_DECLARATIONS = [
    re.compile(r"^#define\s+(\w+)", re.M),
    re.compile(r"^\s*const\s+[\w<>]+\s+(\w+)\s*=", re.M),
    re.compile(r"^\s*typedef\s+[^;]+?\s(\w+)\s*;", re.M),
    re.compile(r"^\s*(?:header|struct)\s+(\w+)\s*\{", re.M),
    # functions (P4-16: "<return type> name(<in/out parameters>) {", no keyword)
    re.compile(r"^(?:bool|void|bit<\w+>|int<\w+>|\w+_t)\s+(\w+)\s*\((?:in|out|inout)\s", re.M),
    re.compile(r"^\s*action\s+(\w+)\s*\(", re.M),
    re.compile(r"^\s*table\s+(\w+)\s*\{", re.M),
    # extern instances: register<..>(..) x;  Register<..>(..) x;  counter(..) x;  ...
    re.compile(r"^\s*(?:register|Register|counter|Counter|Hash|CRCPolynomial|Checksum|Digest)"
               r"\b[^;=]*\)\s*(\w+)\s*;", re.M),
    re.compile(r"^\s*RegisterAction<[^>]*(?:<[^>]*>[^>]*)*>\s*\(\s*\w+\s*\)\s*(\w+)\s*=",
               re.M),
]

_PAIRS = {")": "(", "]": "[", "}": "{"}

#: Words that open a line in other languages but are no P4-16 syntax (p4c stops there).
_NOT_P4_16 = (
    ("function", "P4-16 has no 'function' keyword: declare '<type> name(...) { ... }'"),
)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda mt: "\n" * mt.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def lint_p4(text: str) -> list[str]:
    """Problems a template mistake leaves in a generated program, found without p4c:
    Jinja leftovers, unbalanced brackets, tabs, trailing blanks, long lines, double blank
    lines, and declarations (constants, types, functions, actions, tables, externs) that
    nothing uses. Returns a list of messages; empty means clean."""
    problems: list[str] = []
    for token in ("{{", "}}", "{%", "%}", "{#", "#}"):
        if token in text:
            problems.append(f"Jinja leftover {token!r}")
    if not text.endswith("\n") or text.endswith("\n\n"):
        problems.append("file must end with exactly one newline")
    for n, line in enumerate(text.splitlines(), 1):
        if "\t" in line:
            problems.append(f"line {n}: tab")
        if line != line.rstrip():
            problems.append(f"line {n}: trailing whitespace")
        if len(line) > 100:
            problems.append(f"line {n}: {len(line)} characters (max 100)")
    if "\n\n\n" in text:
        problems.append(f"line {text[:text.index(chr(10) * 3)].count(chr(10)) + 2}: "
                        f"two blank lines in a row")
    code = _strip_comments(text)
    for n, line in enumerate(code.splitlines(), 1):
        for word, why in _NOT_P4_16:
            if re.search(rf"^\s*{word}\b", line):
                problems.append(f"line {n}: {why}")
    stack: list[tuple[str, int]] = []
    for n, line in enumerate(code.splitlines(), 1):
        for ch in line:
            if ch in "([{":
                stack.append((ch, n))
            elif ch in ")]}":
                if not stack or stack[-1][0] != _PAIRS[ch]:
                    problems.append(f"line {n}: unmatched {ch!r}")
                    return problems
                stack.pop()
    problems += [f"line {n}: unclosed {ch!r}" for ch, n in stack]
    declared: dict[str, int] = {}
    for pattern in _DECLARATIONS:
        for mt in pattern.finditer(code):
            declared.setdefault(mt.group(1), code[:mt.start(1)].count("\n") + 1)
    for name, line_no in sorted(declared.items(), key=lambda kv: kv[1]):
        if len(re.findall(rf"\b{re.escape(name)}\b", code)) < 2:
            problems.append(f"line {line_no}: {name!r} is declared but never used")
    return problems
