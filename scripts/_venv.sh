# Shared by scripts/main.sh and scripts/test.sh: create .venv with Python >= 3.11
# if it is missing, then install seqkit (editable) with the given extras.
ensure_venv() {
    local spec="$1" py
    if [ ! -x .venv/bin/python ]; then
        py="${PYTHON:-}"
        if [ -z "$py" ]; then
            for candidate in python3.11 python3.12 python3.13 python3; do
                if command -v "$candidate" >/dev/null 2>&1; then py="$candidate"; break; fi
            done
        fi
        if [ -z "$py" ] || ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "seqkit needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2
            exit 1
        fi
        "$py" -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e "$spec"
}
