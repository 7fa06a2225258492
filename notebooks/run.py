#!/usr/bin/env python3
"""Executes the notebooks headless with the evcxr (Rust) kernel and fails on any failing cell.

    notebooks/run.py                 # every notebooks/*.ipynb must pass, every notebooks/tests/*.ipynb must fail
    notebooks/run.py --write         # the same, and rewrites the committed outputs from this run
    notebooks/run.py --expect-fail   # only the must-fail notebooks: proves that a failing cell fails the run
    notebooks/run.py notebooks/2_sizes.ipynb   # just these
    notebooks/run.py --lab           # opens them in Jupyter Lab, with the same environment

It runs itself with the Python of the venv notebooks/setup.sh made (in its cache outside the checkout).

Why not `jupyter nbconvert --execute`: evcxr reports a compile error or a panic as an `error`
output, but an `Err` from `?` only as a line on stderr, and nbconvert exits 0 on it. This runner
looks at every output of every executed cell itself: an `error` output fails the cell, and so does any
stderr text (a cell whose stderr is expected says so with the tag `allow-stderr`).

Why a barrier after every cell: evcxr forwards the cell's stdout and stderr to Jupyter from a thread
of its own, so a cell's last lines can reach Jupyter after the kernel has said the cell is done, and
nbclient drops a message that comes after its cell has finished. That is how a `?` error could pass
unseen (measured before the barrier: 2 of 6 runs of notebooks/tests/must_fail_question_mark.ipynb).
So after each cell the runner runs a hidden cell that prints a token on stdout and on stderr and
waits until both tokens arrive: each stream reaches Jupyter in order, so by then every line the cell
printed has arrived, and it is put back into that cell's outputs. The barrier costs one small
compile per cell.

All notebooks share one evcxr build directory (EVCXR_TMPDIR, default ~/.cache/gpt2-notebooks/evcxr,
outside the checkout so that fresh clones reuse it too), so the crate's dependencies are compiled
once, by the first notebook, and reused by the rest and by later runs.
The closing line is `N passed, N failed`.
"""
import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path


def tools_venv():
    """The venv notebooks/setup.sh installed Jupyter into: in its per-machine cache outside the
    checkout, which `setup.sh --print-dir` names (the folder is keyed by the pinned versions)."""
    setup = Path(__file__).resolve().parent / "setup.sh"
    folder = subprocess.run([str(setup), "--print-dir"], check=True, capture_output=True, text=True).stdout.strip()
    return Path(folder) / "venv"


# Run with any python3: if this is not the tools' venv, run again with its Python (it has nbclient).
if __name__ == "__main__" and Path(sys.prefix).resolve() != tools_venv().resolve():
    python = tools_venv() / "bin" / "python"
    if not python.exists():
        sys.exit(f"notebooks/run.py: no Jupyter venv at {python.parent.parent}: run notebooks/setup.sh first")
    os.execv(python, [str(python), __file__, *sys.argv[1:]])

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete
from nbclient.util import ensure_async

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KERNEL = "rust"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")  # the iopub messages that are outputs


# evcxr builds every cell and every dependency with its cell profile (opt-level 2), so the first
# `:dep` cell spends most of its time optimizing tokio, axum, parquet, clap... which the notebooks
# never run, and every cell is optimized although its own code only calls the crate. Cargo reads
# `.cargo/config.toml` from the build directory's parents too, and its profile wins over evcxr's
# Cargo.toml: this one builds the cells and the dependencies unoptimized and optimizes only what the
# notebooks' loops run (the crate and rayon, as the dev profile does: opt-level 3 with debug
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
    # The hidden barrier cells count in evcxr's execution counter: number the code cells 1, 2, 3...
    count = 0
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            count += 1
            cell["execution_count"] = count
            for out in cell.get("outputs", []):
                if out.get("output_type") == "execute_result":
                    out["execution_count"] = count
    return nb


class BarrierClient(NotebookClient):
    """nbclient's client, made to lose no output: a message that arrives after its cell has finished is
    kept (nbclient drops it), and after every code cell a barrier cell (see the module's doc) waits
    until everything the cell printed has arrived, then puts it back into the cell's outputs."""

    BARRIER_TIMEOUT = 600  # seconds: the barrier is one small compile, but evcxr may rebuild first

    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        # nbclient's own loop, except that a message for another (an earlier) cell is kept, not dropped.
        while True:
            msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=None))
            if msg["parent_header"].get("msg_id") == parent_msg_id:
                try:
                    self.process_message(msg, cell, cell_index)
                except CellExecutionComplete:
                    return
            else:
                self.strays.append(msg)

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        self.strays = []
        cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        if cell.cell_type == "code" and cell.source.strip():
            await self._barrier(cell, cell_index)
        return cell

    async def _barrier(self, cell, cell_index):
        token = f"notebooks/run.py barrier {uuid.uuid4().hex}"
        barrier = nbformat.v4.new_code_cell(f'println!("{token}"); eprintln!("{token}");')
        late = self.strays
        self.strays = []
        await super().async_execute_cell(barrier, cell_index, store_history=False)
        self.nb.cells[cell_index] = cell  # nbclient stores the cell it ran at that index: put ours back
        waiting = {"stdout", "stderr"}
        # The cell's late messages (its own parent id) were sent before the barrier began, so they
        # come first; then what arrived while the barrier ran (the barrier's parent id).
        outputs = [nbformat.v4.output_from_msg(m) for m in late + self.strays if m["msg_type"] in OUTPUT_TYPES]
        outputs += list(barrier.outputs)
        self.strays = []
        for out in outputs:
            self._take(cell, out, token, waiting)
        # Whatever has not arrived yet comes after the barrier cell's end: read it here.
        deadline = time.monotonic() + self.BARRIER_TIMEOUT
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the barrier after cell {cell_index} never printed its token on {sorted(waiting)}")
            msg = await asyncio.wait_for(ensure_async(self.kc.iopub_channel.get_msg(timeout=None)), left)
            if msg["msg_type"] in OUTPUT_TYPES:
                self._take(cell, nbformat.v4.output_from_msg(msg), token, waiting)

    @staticmethod
    def _take(cell, out, token, waiting):
        """Puts one output that arrived during (or after) the barrier back into cell's outputs, leaving
        out the barrier's own token lines (and noting which streams have delivered theirs)."""
        if out.get("output_type") == "stream":
            lines = out["text"].splitlines(keepends=True)
            kept = [line for line in lines if token not in line]
            if len(kept) != len(lines):
                waiting.discard(out["name"])
            if not kept:
                return
            out["text"] = "".join(kept)
        cell.outputs.append(out)


def execute(path, timeout, kernel):
    """Runs one notebook top to bottom; returns (executed notebook, [(cell number, error)], seconds)."""
    nb = nbformat.read(path, as_version=4)
    client = BarrierClient(
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
    coalesce_streams(nb)  # one output per stream run, so a failure prints as one block
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
            # A must-fail notebook tags the cells that must fail `must-fail`: it fails as it must only if
            # exactly those cells fail (not, say, a kernel that never started).
            must = {no for no, cell in enumerate((c for c in nb.cells if c.get("cell_type") == "code"), 1)
                    if "must-fail" in cell.get("metadata", {}).get("tags", [])}
            failing = {cell for cell, _ in failures}
            if failing and failing == must:
                cell, err = failures[0]
                first = err.splitlines()[0] if err else ""
                print(f"ok   {name} ({seconds:.0f} s): failed as it must, cell {cell}: {first}")
                passed += 1
            else:
                failed += 1
                for cell in sorted(must - failing):
                    print(f"FAIL {name}, cell {cell}: passed, but it is tagged must-fail")
                for cell, err in failures:
                    if cell not in must:
                        where = f"cell {cell}" if cell is not None else "kernel"
                        print(f"FAIL {name}, {where}: failed, but it is not tagged must-fail:\n    " + err.replace("\n", "\n    "))
                if not must:
                    print(f"FAIL {name}: no cell is tagged must-fail")
                print(f"FAIL {name} ({seconds:.0f} s): this notebook must fail in its must-fail cells, and only there")
            sys.stdout.flush()
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
                nbformat.write(nb, path)
        sys.stdout.flush()

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
