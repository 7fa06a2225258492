#!/usr/bin/env python3
"""Executes the notebooks headless with the evcxr (Rust) kernel and fails on any failing cell.

    notebooks/run.py                 # every notebooks/*.ipynb must pass, every notebooks/tests/*.ipynb must fail
    notebooks/run.py --write         # the same, and rewrites the committed outputs from this run
    notebooks/run.py --expect-fail   # only the must-fail notebooks: proves that a failing cell fails the run
    notebooks/run.py notebooks/2_sizes.ipynb   # just these
    notebooks/run.py --lab           # opens them in Jupyter Lab, with the same environment

Why not `jupyter nbconvert --execute`: evcxr reports a compile error, a panic or an `Err` from `?`
as a stderr stream or an `error` output, and nbconvert exits 0 on some of them. This runner looks at
every output of every executed cell itself: an `error` output fails the cell, and so does any stderr
text (a cell whose stderr is expected says so with the tag `allow-stderr`).

All notebooks share one evcxr build directory (EVCXR_TMPDIR, default ~/.cache/gpt2-notebooks/evcxr,
outside the checkout so that fresh clones reuse it too), so the crate's dependencies are compiled
once, by the first notebook, and reused by the rest and by later runs.
The closing line is `N passed, N failed`.
"""
import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KERNEL = "rust"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# evcxr builds every cell and every dependency with its cell profile (opt-level 2), so the first
# `:dep` cell spends most of its time optimizing tokio, axum, parquet, clap... which the notebooks
# never run, and every cell is optimized although its own code only calls the crate. Cargo reads
# `.cargo/config.toml` from the build directory's parents too, and its profile wins over evcxr's
# Cargo.toml: this one builds the cells and the dependencies unoptimized and optimizes only what the
# notebooks' loops run (the crate and rayon, as `cargo test`'s profile does: opt-level 3 with debug
# assertions; a rustc command line caught during the build showed `-C opt-level=3` for gpt2).
CARGO_PROFILE = """\
# Written by notebooks/run.py: the profile of evcxr's build directory below this folder.
[profile.dev]
opt-level = 0
[profile.dev.package."*"]
opt-level = 0
[profile.dev.package.gpt2]
opt-level = 3
[profile.dev.package.rayon]
opt-level = 3
[profile.dev.package.rayon-core]
opt-level = 3
[profile.dev.package.crossbeam-deque]
opt-level = 3
[profile.dev.package.crossbeam-epoch]
opt-level = 3
[profile.dev.package.crossbeam-utils]
opt-level = 3
"""


def write_cargo_profile(folder):
    """Writes CARGO_PROFILE to folder/.cargo/config.toml (unless it is there already)."""
    path = folder / ".cargo" / "config.toml"
    if not path.exists() or path.read_text() != CARGO_PROFILE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(CARGO_PROFILE)


def cell_errors(cell):
    """The failures among one executed code cell's outputs, as strings."""
    if cell.get("cell_type") != "code":
        return []
    allow_stderr = "allow-stderr" in cell.get("metadata", {}).get("tags", [])
    errors = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "error":
            text = "\n".join(out.get("traceback") or []) or f"{out.get('ename')}: {out.get('evalue')}"
            errors.append(ANSI.sub("", text).strip() or out.get("ename", "error"))
        elif kind == "stream" and out.get("name") == "stderr" and not allow_stderr:
            text = out.get("text", "")
            if text.strip():
                errors.append(ANSI.sub("", text).strip())
    return errors


def coalesce_streams(nb):
    """Joins each run of stdout (or stderr) outputs of a cell into one: evcxr sends every line as its
    own message, and one output per line makes the committed files long and their diffs noisy."""
    for cell in nb.cells:
        merged = []
        for out in cell.get("outputs", []):
            prev = merged[-1] if merged else None
            if out.get("output_type") == "stream" and prev is not None and prev.get("output_type") == "stream" \
                    and prev.get("name") == out.get("name"):
                prev["text"] += out["text"]
            else:
                merged.append(out)
        if "outputs" in cell:
            cell["outputs"] = merged
    return nb


def execute(path, timeout, kernel):
    """Runs one notebook top to bottom; returns (executed notebook, [(cell number, error)], seconds)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=timeout,
        allow_errors=True,  # keep going: we inspect every cell ourselves below
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.monotonic()
    failures = []
    try:
        client.execute()
    except Exception as e:  # a timeout or a dead kernel: the notebook fails as a whole
        failures.append((None, f"{type(e).__name__}: {e}"))
    seconds = time.monotonic() - start
    code_no = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        code_no += 1
        for err in cell_errors(cell):
            failures.append((code_no, err))
    return nb, failures, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: all)")
    ap.add_argument("--write", action="store_true", help="rewrite each passing notebook with this run's outputs")
    ap.add_argument("--expect-fail", action="store_true", help="run only notebooks/tests/*.ipynb, which must fail")
    ap.add_argument("--lab", action="store_true", help="open the notebooks in Jupyter Lab, with the environment they run in here")
    ap.add_argument("--kernel", default=KERNEL, help="Jupyter kernel name (default: rust, evcxr's)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds one cell may take (default 1800)")
    args = ap.parse_args()

    # Outside the checkout, so that CI's fresh clones reuse the compiled dependencies too.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpt2-notebooks" / "evcxr"
    os.environ.setdefault("EVCXR_TMPDIR", str(cache))
    Path(os.environ["EVCXR_TMPDIR"]).mkdir(parents=True, exist_ok=True)
    write_cargo_profile(Path(os.environ["EVCXR_TMPDIR"]).parent)
    # Each cell is a shared library linked to the toolchain's libstd-*.so. The run path cargo writes
    # into it is relative and, for evcxr's nested target folder, one `..` too deep, so the kernel's
    # dlopen fails ("dlopen failed", the kernel dies) unless the loader is told where libstd is.
    libdir = subprocess.run(["rustc", "--print", "target-libdir"], check=True, capture_output=True, text=True).stdout.strip()
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in [libdir, os.environ.get("LD_LIBRARY_PATH")] if p)

    if args.lab:
        jupyter = Path(sys.executable).parent / "jupyter"
        os.execv(jupyter, [str(jupyter), "lab", str(HERE)])

    must_fail = sorted((HERE / "tests").glob("*.ipynb"))
    if args.notebooks:
        plan = [(p.resolve(), p.resolve().parent.name == "tests") for p in args.notebooks]
    elif args.expect_fail:
        plan = [(p, True) for p in must_fail]
    else:
        plan = [(p, False) for p in sorted(HERE.glob("*.ipynb"))] + [(p, True) for p in must_fail]

    passed = failed = 0
    for path, expect_fail in plan:
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        nb, failures, seconds = execute(path, args.timeout, args.kernel)
        if expect_fail:
            if failures:
                cell, err = failures[0]
                first = err.splitlines()[0] if err else ""
                print(f"ok   {name} ({seconds:.0f} s): failed as it must, cell {cell}: {first}")
                passed += 1
            else:
                print(f"FAIL {name} ({seconds:.0f} s): every cell passed, but this notebook must fail")
                failed += 1
            continue
        if failures:
            failed += 1
            for cell, err in failures:
                where = f"cell {cell}" if cell is not None else "kernel"
                print(f"FAIL {name}, {where}:\n    " + err.replace("\n", "\n    "))
            print(f"FAIL {name} ({seconds:.0f} s): {len(failures)} failing output(s)")
        else:
            passed += 1
            print(f"ok   {name} ({seconds:.0f} s)")
            if args.write:
                nbformat.write(coalesce_streams(nb), path)
        sys.stdout.flush()

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
