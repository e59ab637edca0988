"""The reference statement's pictures in docs/: page 1 and page 2 as PNG.

    DJANGO_DEBUG=1 python scripts/reference_pdf.py [--lines 90] [--out docs] [--keep-pdf]

Renders `statements.reference.reference_data` (no database: the figures are built and allocated
in memory, the same way the generator does) with `statements.pdf.render_pdf`, then rasterises
pages 1 and 2 with poppler's `pdftoppm -r 110` (Debian: `apt-get install poppler-utils`) into
docs/statement-reference.png and docs/statement-reference-2.png. Run it after changing the PDF's
layout and look at the result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("statement-reference.png", "statement-reference-2.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=90, help="detail lines (default 90: 3 pages)")
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--keep-pdf", action="store_true", help="also save the PDF next to them")
    args = parser.parse_args(argv)
    if not shutil.which("pdftoppm"):
        parser.error("pdftoppm not found (Debian: apt-get install poppler-utils)")

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openchargeback.settings")
    import django

    django.setup()
    from statements.pdf import render_pdf
    from statements.reference import reference_data

    pdf = render_pdf(reference_data(args.lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "reference.pdf"
        source.write_bytes(pdf)
        if args.keep_pdf:
            shutil.copyfile(source, out / "statement-reference.pdf")
        for page, name in enumerate(NAMES, start=1):
            stem = Path(tmp) / f"page{page}"
            subprocess.run(
                [
                    "pdftoppm",
                    "-r",
                    "110",
                    "-png",
                    "-singlefile",
                    "-f",
                    str(page),
                    "-l",
                    str(page),
                    str(source),
                    str(stem),
                ],
                check=True,
            )
            shutil.move(f"{stem}.png", out / name)
            print(out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
