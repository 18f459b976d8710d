#!/usr/bin/env python3
"""The `use crate::X` graph of src/'s top-level modules: prints it, and
fails (exit 1) on a cycle or on an edge the map at the top of src/lib.rs
does not allow (its "Layers" list: a module may use only modules of the
layers below its own). Run by CI (.ci/run)."""
import pathlib, re, sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"

def top_module(path):
    rel = path.relative_to(SRC)
    first = rel.parts[0]
    return first[:-3] if first.endswith(".rs") else first

def edges():
    graph = {}
    for f in SRC.rglob("*.rs"):
        if f.name in ("main.rs", "lib.rs") and f.parent == SRC:
            continue
        m = top_module(f)
        graph.setdefault(m, set())
        text = f.read_text()
        # Unit tests may reach anywhere; only the modules' own code counts,
        # not what their comments and doc links mention.
        text = re.split(r"\n#\[cfg\(test\)\]\s*\nmod tests", text)[0]
        text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
        for dep in re.findall(r"\bcrate::([a-z_]+)", text):
            if dep != m:
                graph[m].add(dep)
    return graph

def layers():
    """Parse the `Layers` block of src/lib.rs: one line per layer, top
    first, module names separated by spaces or '·'."""
    text = (SRC / "lib.rs").read_text()
    block = re.search(r"//! # Layers\n//! ```text\n(.*?)//! ```", text, re.S)
    if not block:
        sys.exit("src/lib.rs has no `# Layers` block")
    out = []
    for line in block.group(1).splitlines():
        # A layer's modules come first, separated by '·'; two spaces or
        # more start its description.
        line = line.removeprefix("//!").removeprefix(" ").rstrip()
        if not line or line.startswith(" "):
            continue
        names = re.split(r"\s{2,}", line)[0]
        names = [n.strip() for n in names.split("·")]
        if names and all(re.fullmatch(r"[a-z_]+", n) for n in names):
            out.append(names)
    return out

def main():
    graph = edges()
    order = layers()
    level = {m: i for i, layer in enumerate(order) for m in layer}
    if "-v" in sys.argv:
        for i, layer in enumerate(order):
            print(f"layer {i}: {' · '.join(layer)}")
    problems = []
    for m in sorted(graph):
        if m not in level:
            problems.append(f"module {m} is in no layer of the map in src/lib.rs")
    for m, deps in sorted(graph.items()):
        for d in sorted(deps):
            if m in level and d in level and level[d] <= level[m]:
                problems.append(f"{m} -> {d}: not a layer below")
    # Cycles (whatever the map says).
    state = {}
    def visit(n, path):
        state[n] = 1
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                problems.append("cycle: " + " -> ".join(path[path.index(d):] + [d]) if d in path else f"cycle via {d}")
            elif d not in state:
                visit(d, path + [d])
        state[n] = 2
    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    for m, deps in sorted(graph.items()):
        print(f"{m:>10} -> {', '.join(sorted(deps)) or '(nothing)'}")
    if problems:
        print("\n".join(sorted(set(problems))), file=sys.stderr)
        sys.exit(1)

main()
