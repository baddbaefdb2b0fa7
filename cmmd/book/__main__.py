"""The command line: ``python -m cmmd.book [--profile smoke|cpu|paper] [--force | --check | --refresh-text] [NAME ...]``.

Runs the named chapters (all by default) with :func:`cmmd.book.runner.run_notebook`, or only checks
them (``--check``: exit 1 when an executed notebook is stale) or copies edited prose into them
(``--refresh-text``). Whatever happened, the ledger pages are rewritten at the end
(:func:`cmmd.book.pages.write_ledger_pages`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from cmmd.book.contract import NotebookError
from cmmd.book.pages import write_ledger_pages
from cmmd.book.paths import GENERATED_DIR, NOTEBOOKS_DIR
from cmmd.book.runner import DEFAULT_PROFILE, refresh_text, resolve_names, run_notebook, stale_reasons
from cmmd.runtime import PROFILES


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line), do what it asks; 0 on success, 1 on an error or a stale copy."""
    parser = argparse.ArgumentParser(
        prog="python -m cmmd.book",
        description="Execute the book's notebooks (notebooks/*.py) into book/generated/.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="notebooks to run (default: all)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=list(PROFILES))
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rerun notebooks that are up to date")
    parser.add_argument(
        "--check",
        action="store_true",
        help="run nothing; exit 1 if an executed notebook is stale against its source or profile",
    )
    parser.add_argument(
        "--refresh-text",
        action="store_true",
        help="run nothing; copy edited markdown into executed notebooks whose code is unchanged",
    )
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=GENERATED_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        names = resolve_names(args.names, args.notebooks)
        if args.check:
            stale = {
                n: stale_reasons(n, profile=args.profile, notebooks_dir=args.notebooks, generated_dir=args.output)
                for n in names
            }
            for n, reasons in stale.items():
                print(f"{n}: " + ("; ".join(reasons) if reasons else "up to date"))
            return 1 if any(stale.values()) else 0
        if args.refresh_text:
            for n in names:
                refresh_text(n, notebooks_dir=args.notebooks, generated_dir=args.output)
            return 0
        if not names:
            print(f"no notebooks in {args.notebooks}", file=sys.stderr)
        for n in names:
            run_notebook(
                n,
                profile=args.profile,
                device=args.device,
                seed=args.seed,
                force=args.force,
                notebooks_dir=args.notebooks,
                generated_dir=args.output,
            )
    except (NotebookError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if not args.check and Path(args.output).is_dir():
            write_ledger_pages(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
