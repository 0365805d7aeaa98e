#!/usr/bin/env bash
# Regenerates crates/experiment/assets/plot-font.ttf: DejaVu Sans (Bitstream Vera licence, DejaVu
# changes public domain; licence text in crates/experiment/assets/FONT-LICENSE) subset to printable
# ASCII plus a few symbols the plots use, so that PNG plots need no system font. Needs fontTools
# 4.60.1 (`pip install fonttools==4.60.1`) and the Debian/Ubuntu package fonts-dejavu-core.
set -euo pipefail
src=${1:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}
out=crates/experiment/assets/plot-font.ttf
python3 -c 'import fontTools, sys; assert fontTools.version == "4.60.1", fontTools.version'
pyftsubset "$src" --unicodes="U+0020-007E,U+00B1,U+00D7,U+03C1" --output-file="$out" \
  --no-hinting --desubroutinize --layout-features='' --name-IDs='*'
sed -n '/^Files: \*/,/^Files: debian/p' /usr/share/doc/fonts-dejavu-core/copyright \
  | sed '$d' > crates/experiment/assets/FONT-LICENSE
ls -l "$out"
