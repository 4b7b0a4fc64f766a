#!/usr/bin/env bash
# Makes coordinator/assets/DejaVuSans-subset.ttf: the glyphs the plots draw (ASCII, ±, ×, Δ, −, –,
# ≤, ≥, …) from DejaVu Sans (Bitstream Vera licence, kept beside it), compiled into the
# coordinator so that PNG plots need no system font. Needs fonttools and a DejaVuSans.ttf
# (Debian: fonts-dejavu-core).
#   python3 -m venv /tmp/font-venv && /tmp/font-venv/bin/pip install fonttools
#   PYFTSUBSET=/tmp/font-venv/bin/pyftsubset scripts/make_font_subset.sh
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYFTSUBSET:-pyftsubset}" "${DEJAVU:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}" \
  --unicodes="U+0020-007E,U+00B1,U+00B5,U+00D7,U+0394,U+03B1,U+03C3,U+2013,U+2014,U+2212,U+2264,U+2265,U+2026" \
  --layout-features='' --no-hinting --output-file=coordinator/assets/DejaVuSans-subset.ttf
