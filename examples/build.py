"""Compile every example contract and write (or check) the committed artifacts.

    python -m examples.build           # rewrite examples/*/artifacts/*.json
    python -m examples.build --check   # exit 1 if a committed artifact differs from a fresh build

Each ``examples/<name>/*.vy`` or ``*.sol`` becomes ``examples/<name>/artifacts/<stem>.json``.
Needs the pinned compilers (vyper in the venv, solc-js in node_modules); the demo does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from enclavenet.compiler import Artifact, compile_file

EXAMPLES_DIR = Path(__file__).resolve().parent


def sources() -> list[Path]:
    """Every contract source under examples/, sorted."""
    return sorted(p for p in EXAMPLES_DIR.glob("*/*") if p.suffix in (".vy", ".sol"))


def artifact_path(source: Path) -> Path:
    return source.parent / "artifacts" / f"{source.stem}.json"


def build(check: bool = False) -> list[Path]:
    """Compile all sources; write artifacts, or with ``check`` only list the stale ones."""
    stale: list[Path] = []
    for src in sources():
        fresh: Artifact = compile_file(src)
        path = artifact_path(src)
        committed = json.loads(path.read_text()) if path.is_file() else None
        if committed != fresh.to_json():
            stale.append(path)
            if not check:
                fresh.save(path)
    return stale


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report stale artifacts")
    args = ap.parse_args()
    stale = build(check=args.check)
    for p in stale:
        print(f"{'stale' if args.check else 'wrote'}: {p.relative_to(EXAMPLES_DIR.parent)}")
    if args.check and stale:
        print("artifacts are out of date: run `python -m examples.build`", file=sys.stderr)
        return 1
    print(f"{len(sources())} contracts, {len(stale)} {'stale' if args.check else 'rebuilt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
