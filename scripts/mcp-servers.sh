#!/usr/bin/env bash
# Install the real MCP servers the MCP tests talk to, and print how to start them:
#   - @modelcontextprotocol/server-filesystem (npm, stdio), into $dir/npm;
#   - @modelcontextprotocol/server-everything (npm; its `streamableHttp` mode serves
#     http://127.0.0.1:$PORT/mcp), into $dir/npm;
#   - mcp-server-git (PyPI, stdio), into the virtualenv $dir/venv.
# Idempotent: an install that is already there (same pinned version) is reused.
#
#   scripts/mcp-servers.sh           # install if needed; print a JSON object on stdout:
#                                    # {"fs": [argv before the allowed directories...],
#                                    #  "git": [argv before `--repository DIR`...],
#                                    #  "everything": [argv before `stdio|streamableHttp`]}
#
# Environment: ORCH_MCP_DIR (default ~/.cache/orch-mcp, shared by every checkout on the
# machine). Needs node + npm and python3 (with venv). Exits non-zero, saying why on stderr,
# when something cannot be installed.
set -euo pipefail

dir="${ORCH_MCP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orch-mcp}"
fs_version="2026.8.31"
everything_version="2026.8.31"
git_version="2026.10.19"
installlog="$dir/install.log"

log() { printf 'mcp-servers: %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }

mkdir -p "$dir"

fs_entry="$dir/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
everything_entry="$dir/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
install_npm() {
  local marker="$dir/npm/.installed-$fs_version-$everything_version"
  [ -f "$marker" ] && [ -f "$fs_entry" ] && [ -f "$everything_entry" ] && return 0
  command -v npm >/dev/null || fail "npm is not installed (apt-get install nodejs npm)"
  log "installing @modelcontextprotocol/server-filesystem@$fs_version and" \
    "server-everything@$everything_version (log: $installlog)"
  mkdir -p "$dir/npm"
  npm install --prefix "$dir/npm" --no-audit --no-fund --loglevel=error \
    "@modelcontextprotocol/server-filesystem@$fs_version" \
    "@modelcontextprotocol/server-everything@$everything_version" >>"$installlog" 2>&1 \
    || fail "npm install failed; see $installlog"
  [ -f "$fs_entry" ] || fail "npm installed no $fs_entry"
  [ -f "$everything_entry" ] || fail "npm installed no $everything_entry"
  rm -f "$dir"/npm/.installed-*
  touch "$marker"
}

venv="$dir/venv"
install_git() {
  local marker="$venv/.installed-$git_version"
  [ -f "$marker" ] && [ -x "$venv/bin/python" ] && return 0
  command -v python3 >/dev/null || fail "python3 is not installed"
  log "installing mcp-server-git==$git_version (log: $installlog)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >>"$installlog" 2>&1 \
    || fail "cannot create a virtualenv with python3 -m venv; see $installlog"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "mcp-server-git==$git_version" >>"$installlog" 2>&1 \
    || fail "pip install mcp-server-git failed; see $installlog"
  rm -f "$venv"/.installed-*
  touch "$marker"
}

# One install at a time per cache directory (tests may call this concurrently).
exec 9>"$dir/.lock"
if command -v flock >/dev/null; then flock 9; fi

install_npm
install_git

node="$(command -v node)" || fail "node is not installed"
"$venv/bin/python" - "$node" "$fs_entry" "$everything_entry" "$venv/bin/python" <<'PY'
import json, sys
node, fs, everything, python = sys.argv[1:5]
print(json.dumps({
    "fs": [node, fs],
    "git": [python, "-m", "mcp_server_git"],
    "everything": [node, everything],
}))
PY
