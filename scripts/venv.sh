# Sourced by scripts/run and scripts/test: make .venv and install the pinned requirements
# (again only when the requirements file changed).
PYTHON="${PYTHON:-python3}"
REQS="$1"
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv; then
    echo "Could not create a virtual environment. On Debian: sudo apt-get install -y python3-venv" >&2
    exit 1
  fi
fi
STAMP=".venv/.installed-$(cat requirements*.txt constraints.txt 2>/dev/null | sha256sum | cut -c1-16)-$(basename "$REQS")"
if [ ! -f "$STAMP" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$REQS" -c constraints.txt
  touch "$STAMP"
fi
