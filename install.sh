#!/usr/bin/env bash
# Build the project's virtual environment (./.venv) from the `pip:` list of environment.yaml.
#
#   bash install.sh                 # uv (bootstrapped with pip inside the venv); re-runs are instant
#   INSTALLER=pip bash install.sh   # plain pip instead of uv (slower: ~1 min every time)
#   bash install.sh --tools vot     # only the VOT toolkit's own environment, ./.venv-tools/vot, from
#                                   # environment-vot.yaml (kept apart: it needs GUI OpenCV and old pins)
#
# Optional variables:
#   PYTHON=/path/to/python3   base interpreter for the venv (default: first python >= 3.10 on PATH,
#                             preferring the version named in environment.yaml)
#   LORETRACK_VENV=DIR        venv location (default: .venv next to this script; .venv-tools/NAME with --tools)
#   MIN_FREE_GB=N             free disk required before creating a new venv (default 7 for .venv, ~6 GB;
#                             1 for a tools environment)
#   FORCE=1                   ignore the up-to-date stamp and reinstall
#
# Package indexes, find-links and the TLS certificate are taken from `pip config list`, so the script
# installs from the same places pip would. Everything is located relative to this script's directory.
set -euo pipefail

UV_VERSION="0.13.9"      # installer version (bootstrapped with pip into the venv)
MIN_PYTHON="3.10"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$ROOT/install.sh"
INSTALLER="${INSTALLER:-uv}"
START_SECONDS=$SECONDS

log() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }
trap 'rc=$?; echo "install.sh: error: unexpected failure (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

# --- which environment: the project's (.venv) or a tools environment (--tools NAME) ----------------
TOOLS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --tools) [ $# -ge 2 ] || die "--tools needs a name, e.g. --tools vot"; TOOLS="$2"; shift 2 ;;
        --tools=*) TOOLS="${1#--tools=}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (usage: bash install.sh [--tools NAME])" ;;
    esac
done
if [ -z "$TOOLS" ]; then
    ENV_FILE="$ROOT/environment.yaml"
    VENV="${LORETRACK_VENV:-$ROOT/.venv}"
    VENV_SIZE="~6 GB"
    DEFAULT_MIN_FREE_GB=7
    IMPORTS="cv2, timm, torch, torchvision, yaml"
    IMPORT_CHECK='import cv2, timm, torch, torchvision, yaml
print(f"install.sh: import check OK: torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"timm {timm.__version__}, opencv {cv2.__version__}, pyyaml {yaml.__version__}, "
      f"cuda available: {torch.cuda.is_available()}")'
else
    case "$TOOLS" in
        vot) ;;
        *) die "unknown tools environment '$TOOLS'; available: vot" ;;
    esac
    ENV_FILE="$ROOT/environment-$TOOLS.yaml"
    VENV="${LORETRACK_VENV:-$ROOT/.venv-tools/$TOOLS}"
    VENV_SIZE="~0.5 GB"
    DEFAULT_MIN_FREE_GB=1
    IMPORTS="vot (the VOT toolkit), trax"
    IMPORT_CHECK='import trax, vot, vot.experiment, vot.stack, vot.tracker.trax, vot.workspace
print(f"install.sh: import check OK: vot-toolkit {vot.__version__}")'
fi
STAMP="$VENV/.install-stamp"
# A tools environment borrows the project .venv's uv (and its pip, to read `pip config`) when that is built:
# no pip inside, no uv bootstrap, no bytecode compilation, and a first try from uv's cache alone (~1 min saved).
BORROWED_UV=""
if [ -n "$TOOLS" ] && [ "$INSTALLER" = uv ] \
        && [ "$("$ROOT/.venv/bin/uv" --version 2>/dev/null | awk '{print $2}')" = "$UV_VERSION" ]; then
    BORROWED_UV="$ROOT/.venv/bin/uv"
fi

[ -f "$ENV_FILE" ] || die "$(basename "$ENV_FILE") not found next to install.sh ($ENV_FILE)"
case "$INSTALLER" in uv|pip) ;; *) die "INSTALLER must be 'uv' or 'pip' (got '$INSTALLER')" ;; esac
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV"; STAMP="$VENV/.install-stamp" ;; esac

# --- one install at a time per venv (several shells may call this script at once) ----------------
if command -v flock >/dev/null 2>&1; then
    lock_key="$(printf '%s' "$VENV" | sha256sum | cut -c1-16)"
    exec 9>"${TMPDIR:-/tmp}/loretrack-install-$lock_key.lock"
    if ! flock -n 9; then
        log "another install.sh is working on $VENV; waiting for it ..."
        flock 9
    fi
fi

# --- up to date? ----------------------------------------------------------------------------------
want_stamp="$( { cat "$ENV_FILE" "$SELF"; printf '%s\n' "$VENV"; } | sha256sum | cut -d' ' -f1)"
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] \
        && "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    log "$VENV is up to date ($(basename "$ENV_FILE") and install.sh unchanged); nothing to do."
    exit 0
fi

# --- base Python (>= 3.10, with venv + ensurepip) -------------------------------------------------
python_ok() {  # $1 = interpreter; succeeds if it can create a pip-enabled venv and is new enough
    "$1" -c "import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= tuple(map(int, '$MIN_PYTHON'.split('.'))) else 1)" \
        >/dev/null 2>&1
}
pick_python() {
    if [ -n "${PYTHON:-}" ]; then
        python_ok "$PYTHON" || die "PYTHON=$PYTHON is not a working Python >= $MIN_PYTHON with the venv and ensurepip modules"
        echo "$PYTHON"; return
    fi
    local want cand
    want="$(sed -n 's/^[[:space:]]*-[[:space:]]*python[[:space:]]*=*[[:space:]]*\([0-9][0-9.]*\).*/\1/p' "$ENV_FILE" | head -n1)"
    for cand in ${want:+python$want} python3 python3.13 python3.12 python3.11 python3.10 python; do
        if command -v "$cand" >/dev/null 2>&1 && python_ok "$cand"; then
            command -v "$cand"; return
        fi
    done
    die "no suitable Python found: need python3 >= $MIN_PYTHON with the venv/ensurepip modules (e.g. apt-get install python3-venv), or set PYTHON=/path/to/python3"
}

venv_ok() { [ -f "$VENV/pyvenv.cfg" ] && python_ok "$VENV/bin/python"; }

# --- free disk -------------------------------------------------------------------------------------
check_disk() {  # $1 = GiB required
    local dir="$VENV" free_kb
    while [ ! -d "$dir" ]; do dir="$(dirname "$dir")"; done
    free_kb="$(df -Pk "$dir" | awk 'NR == 2 {print $4}')"
    if [ -n "$free_kb" ] && [ "$free_kb" -lt $(( $1 * 1024 * 1024 )) ]; then
        die "not enough free disk: $(( free_kb / 1024 )) MiB free at $dir, need ${1} GiB (the venv is $VENV_SIZE; set MIN_FREE_GB to override)"
    fi
}

# --- create the venv if needed ----------------------------------------------------------------------
if venv_ok; then
    check_disk 1
    log "updating existing venv $VENV"
else
    if [ -e "$VENV" ]; then
        [ -f "$VENV/pyvenv.cfg" ] || die "$VENV exists but is not a virtual environment; move it away first"
        log "existing $VENV is broken; recreating it"
        rm -rf -- "$VENV"
    fi
    check_disk "${MIN_FREE_GB:-$DEFAULT_MIN_FREE_GB}"
    PY="$(pick_python)" || exit 1   # pick_python already printed the reason
    log "creating $VENV with $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
    mkdir -p "$(dirname "$VENV")"
    if [ -n "$BORROWED_UV" ]; then
        "$BORROWED_UV" venv --quiet --python "$PY" "$VENV" || die "'uv venv --python $PY $VENV' failed"
    else
        "$PY" -m venv "$VENV" || die "'$PY -m venv $VENV' failed"
    fi
fi
VPY="$VENV/bin/python"
UV_BIN="${BORROWED_UV:-$VENV/bin/uv}"
PIP_PY="$VPY"                          # the interpreter whose pip tells the configured indexes
[ -z "$BORROWED_UV" ] || PIP_PY="$ROOT/.venv/bin/python"

# --- requirements: the pip: list of environment.yaml (or the tools environment's file) ---------------
REQ="$(mktemp "${TMPDIR:-/tmp}/loretrack-requirements.XXXXXX")"
LOG="$(mktemp "${TMPDIR:-/tmp}/loretrack-install-log.XXXXXX")"
trap 'rm -f "$REQ" "$LOG"' EXIT
"$VPY" - "$ENV_FILE" >"$REQ" <<'PYEOF' || exit 1  # the parser printed the reason
import re, sys
items, in_pip, pip_indent = [], False, 0
for raw in open(sys.argv[1], encoding="utf-8"):
    line = raw.split("#", 1)[0].rstrip()
    if not line.strip():
        continue
    indent = len(line) - len(line.lstrip())
    text = line.strip()
    if not in_pip:
        if re.fullmatch(r"-\s*pip\s*:", text):
            in_pip, pip_indent = True, indent
        continue
    if indent <= pip_indent:
        break
    if text.startswith("-"):
        items.append(text[1:].strip().strip("'\""))
if not items:
    sys.exit(f"install.sh: error: {sys.argv[1]} has no `- pip:` list")
bad = [i for i in items if "==" not in i]
if bad:
    sys.exit(f"install.sh: error: unpinned requirement(s) in {sys.argv[1]} (pin every direct dependency with ==): " + ", ".join(bad))
print("\n".join(items))
PYEOF
log "$(wc -l <"$REQ" | tr -d ' ') pinned requirements from $(basename "$ENV_FILE"); installer: $INSTALLER"

explain_failure() {  # one-line reason from the installer's log, then exit
    if grep -qiE 'no space left' "$LOG"; then
        die "install failed: disk full (the venv needs $VENV_SIZE)"
    elif grep -qiE 'dns error|failed to lookup|name resolution|name or service not known|connection (refused|reset)|network is unreachable|timed out|timeout|could not connect|error sending request|Max retries exceeded|NewConnectionError|Could not fetch URL|peer certificate|certificate verify|SSLError|tls' "$LOG"; then
        die "install failed: package registry unreachable (network or TLS error; see the log above)"
    elif grep -qiE 'No solution found|ResolutionImpossible|No matching distribution|Could not find a version|not found in the package registry|was not found in' "$LOG"; then
        die "install failed: a pinned package could not be resolved from the configured indexes (see the log above)"
    else
        die "install failed with $INSTALLER (see the log above)"
    fi
}

# --- install ------------------------------------------------------------------------------------------
if [ "$INSTALLER" = uv ]; then
    # uv reads neither pip.conf nor PIP_* variables: translate `pip config list` into uv flags.
    mapfile -t PIPCFG < <("$PIP_PY" - <<'PYEOF'
import ast, re, subprocess, sys
out = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                     capture_output=True, text=True).stdout
rank = {"global": 0, "install": 1, ":env:": 2}   # pip: environment > [install] > [global]
vals = {}
for line in out.splitlines():
    m = re.match(r"^(global|install|:env:)\.([A-Za-z0-9_-]+)=(.*)$", line)
    if not m:
        continue
    sec, key, raw = m.groups()
    try:
        value = str(ast.literal_eval(raw))
    except (ValueError, SyntaxError):
        continue
    key = key.replace("_", "-")
    if key not in vals or rank[sec] >= vals[key][0]:
        vals[key] = (rank[sec], value)
v = {k: val for k, (_, val) in vals.items()}
truthy = lambda s: s.strip().lower() in ("1", "true", "yes", "on")
if "index-url" in v:
    print("--default-index"); print(v["index-url"].split()[0])
for url in v.get("extra-index-url", "").split():
    print("--index"); print(url)
for loc in v.get("find-links", "").split():
    print("--find-links"); print(loc)
for host in v.get("trusted-host", "").split():
    print("--allow-insecure-host"); print(host)
if truthy(v.get("no-index", "")):
    print("--no-index")
if v.get("cert"):
    print("@cert"); print(v["cert"])
if v.get("timeout") or v.get("default-timeout"):
    print("@timeout"); print(v.get("timeout") or v.get("default-timeout"))
if v.get("proxy"):
    print("@proxy"); print(v["proxy"])
PYEOF
    )
    UV_FLAGS=()
    i=0
    while [ $i -lt ${#PIPCFG[@]} ]; do
        case "${PIPCFG[$i]}" in
            --no-index) UV_FLAGS+=("--no-index"); i=$((i + 1)); continue ;;
            @cert) export SSL_CERT_FILE="${SSL_CERT_FILE:-${PIPCFG[$((i + 1))]}}" ;;
            @timeout) export UV_HTTP_TIMEOUT="${UV_HTTP_TIMEOUT:-${PIPCFG[$((i + 1))]}}" ;;
            @proxy) export HTTPS_PROXY="${HTTPS_PROXY:-${PIPCFG[$((i + 1))]}}" HTTP_PROXY="${HTTP_PROXY:-${PIPCFG[$((i + 1))]}}" ;;
            *) UV_FLAGS+=("${PIPCFG[$i]}" "${PIPCFG[$((i + 1))]}") ;;
        esac
        i=$((i + 2))
    done

    if [ "$("$UV_BIN" --version 2>/dev/null | awk '{print $2}')" != "$UV_VERSION" ]; then
        log "bootstrapping uv $UV_VERSION with pip"
        if ! "$VPY" -m pip install --disable-pip-version-check --quiet "uv==$UV_VERSION" >"$LOG" 2>&1; then
            cat "$LOG" >&2
            explain_failure
        fi
    fi
    log "uv flags from pip config: ${UV_FLAGS[*]:-(none)}${SSL_CERT_FILE:+; SSL_CERT_FILE=$SSL_CERT_FILE}"
    rc=0
    if [ -n "$BORROWED_UV" ] && "$UV_BIN" pip install --python "$VPY" --index-strategy unsafe-best-match --offline \
            ${UV_FLAGS[@]+"${UV_FLAGS[@]}"} -r "$REQ" >"$LOG" 2>&1; then
        log "installed from uv's cache: $(grep -c '^ + ' "$LOG" || true) packages"
    else
        compile=(--compile-bytecode)
        [ -z "$TOOLS" ] || compile=()
        "$UV_BIN" pip install --python "$VPY" --index-strategy unsafe-best-match ${compile[@]+"${compile[@]}"} \
            ${UV_FLAGS[@]+"${UV_FLAGS[@]}"} -r "$REQ" 2>&1 | tee "$LOG" || rc=$?
    fi
else
    rc=0
    "$VPY" -m pip install --disable-pip-version-check --progress-bar off -r "$REQ" 2>&1 | tee "$LOG" || rc=$?
fi
[ "$rc" -eq 0 ] || explain_failure

# --- import check ---------------------------------------------------------------------------------------
if ! "$VPY" -c "$IMPORT_CHECK"; then
    die "import check failed in $VENV ($IMPORTS); see the traceback above"
fi

echo "$want_stamp" >"$STAMP"
if [ -n "$TOOLS" ]; then
    log "done in $(( SECONDS - START_SECONDS )) s: $VENV (its commands are in $VENV/bin; see docs/$TOOLS.md)"
    exit 0
fi
if [ "$VENV" = "$ROOT/.venv" ]; then test_cmd=".venv/bin/python -m pytest"; else test_cmd="$VPY -m pytest"; fi
log "done in $(( SECONDS - START_SECONDS )) s. Run the tests with: $test_cmd"
