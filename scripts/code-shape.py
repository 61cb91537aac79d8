#!/usr/bin/env python3
"""Checks two properties of the code's shape and prints what breaks them.

1. Hand-written functions longer than a limit (150 lines by default): every
   `fn` item in the workspace's Rust sources, generated files left out
   (`schema_table.rs`, build outputs), measured from its `fn` line to its
   closing brace.
2. Import loops between source files: file A uses something of file B and
   B, directly or through others, of A. Edges come from `use crate::…`,
   `use super::…`, `crate::a::b::` paths in code and `mod` declarations are
   ignored (a parent declaring a child is not a use), and so are uses of a
   file's own ancestors (a child reading its parent's items is the module
   tree). A loop is one strongly connected component of more than one file.

Exit status 1 when either finds something, so CI can run it.
"""
import argparse
import os
import re
import sys

GENERATED = {"schema_table.rs"}
CRATES = {"ir": "ir/src", "passes": "passes/src", "runtime": "runtime/src",
          "codegen": "codegen/src", "sculpt": "src", "fuzz": "fuzz/src"}


def rust_files(root):
    for crate, src in CRATES.items():
        base = os.path.join(root, src)
        for dirpath, _, names in os.walk(base):
            for n in sorted(names):
                if n.endswith(".rs") and n not in GENERATED:
                    yield crate, base, os.path.join(dirpath, n)


def strip_comments_and_strings(text):
    """Blanks out comments, string and char literals, keeping newlines."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]) or text.startswith("'\\u{", i):
            j = text.find("'", i + 2)
            out.append("' '")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


FN = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def long_functions(root, limit):
    found = []
    for _, _, path in rust_files(root):
        text = strip_comments_and_strings(open(path, encoding="utf-8").read())
        for m in FN.finditer(text):
            # The body starts at the first '{' after the signature, unless a
            # ';' comes first (a trait method without a body).
            j = m.end()
            depth_paren = 0
            while j < len(text):
                ch = text[j]
                if ch in "([<":
                    depth_paren += 1
                elif ch in ")]>":
                    depth_paren -= 1
                elif ch == ";" and depth_paren <= 0:
                    j = -1
                    break
                elif ch == "{" and depth_paren <= 0:
                    break
                j += 1
            if j < 0 or j >= len(text):
                continue
            depth, k = 0, j
            while k < len(text):
                if text[k] == "{":
                    depth += 1
                elif text[k] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            first = text.count("\n", 0, m.start()) + 1
            last = text.count("\n", 0, k) + 1
            if last - first + 1 > limit:
                found.append((last - first + 1, os.path.relpath(path, root), first, m.group(1)))
    return sorted(found, reverse=True)


def module_of(base, path):
    rel = os.path.relpath(path, base)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


USE = re.compile(r"\buse\s+([^;]+);", re.S)
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def expand_use(tree):
    """`a::{b, c::{d}}` → ["a::b", "a::c::d"]."""
    tree = re.sub(r"\s+", "", tree)
    def split(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += ch == "{"
            depth -= ch == "}"
            cur += ch
        if cur:
            parts.append(cur)
        return parts
    def go(prefix, s):
        if "{" in s:
            head, rest = s.split("{", 1)
            rest = rest[:rest.rfind("}")]
            out = []
            for p in split(rest):
                out += go(prefix + head, p)
            return out
        return [prefix + s]
    return go("", tree)


def import_graph(root):
    files = {}
    for crate, base, path in rust_files(root):
        files[(crate, tuple(module_of(base, path)))] = path
    by_module = {k: v for k, v in files.items()}

    def resolve(crate, here_mod, is_mod_file, path):
        segs = path.split("::")
        if segs[0] == "crate":
            mod, segs = [], segs[1:]
        elif segs[0] in ("super", "self"):
            mod = list(here_mod) if is_mod_file else list(here_mod[:-1]) + [here_mod[-1]] if here_mod else []
            # `self` is the current module; `super` its parent.
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    mod = mod[:-1]
                segs = segs[1:]
        else:
            return None
        # The longest module prefix that is a file.
        best = None
        cur = list(mod)
        if (crate, tuple(cur)) in by_module:
            best = tuple(cur)
        for s in segs:
            cur.append(s)
            if (crate, tuple(cur)) in by_module:
                best = tuple(cur)
            else:
                break
        return best

    edges = {}
    for (crate, mod), path in files.items():
        text = strip_comments_and_strings(open(path, encoding="utf-8").read())
        # Leave out test modules: `#[cfg(test)] mod tests { … }`.
        text = re.sub(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{.*", "", text, flags=re.S)
        is_mod_file = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
        targets = set()
        paths = []
        for u in USE.finditer(text):
            paths += [p for p in expand_use(u.group(1)) if p.split("::")[0] in ("crate", "super", "self")]
        text_no_use = USE.sub("", text)
        paths += [m.group(1) + m.group(2) for m in PATH.finditer(text_no_use)]
        # Child modules named bare (`mod x;` then `x::f()` or `use x::f`).
        children = re.findall(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;", text)
        for child in children:
            if re.search(r"(?<![:\w])" + child + r"::", text):
                paths.append("self::" + child if is_mod_file else "self::" + child)
        for p in paths:
            t = resolve(crate, mod, is_mod_file, p)
            if t is not None and t != mod and not (len(t) < len(mod) and mod[:len(t)] == t and t == ()):
                targets.add(t)
        edges[(crate, mod)] = {(crate, t) for t in targets if (crate, t) in files}
    # A child reading its ancestors' items is the module tree, not a tangle
    # (the crate root's re-exports included): only other edges count.
    for (crate, mod) in edges:
        edges[(crate, mod)] = {t for t in edges[(crate, mod)] if mod[:len(t[1])] != t[1]}
    return files, edges


def loops(files, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in sorted(edges):
        if v not in index:
            strong(v)
    return [[os.path.relpath(files[c], ROOT) for c in comp] for comp in out]


def main():
    global ROOT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=150, help="longest function allowed, in lines")
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    args = ap.parse_args()
    ROOT = os.path.abspath(args.root)
    long = long_functions(ROOT, args.limit)
    print(f"functions over {args.limit} lines: {len(long)}")
    for n, path, line, name in long:
        print(f"  {n:5} {path}:{line} {name}")
    files, edges = import_graph(ROOT)
    cycles = loops(files, edges)
    print(f"import loops between files: {len(cycles)}")
    for c in cycles:
        print("  " + " <-> ".join(c))
    sys.exit(1 if long or cycles else 0)


if __name__ == "__main__":
    main()
