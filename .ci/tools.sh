#!/usr/bin/env bash
# Builds or installs the tools Writ's checks and integration tests need, each
# cached under the user cache dir so a machine builds it once:
#   buf          from the npm registry (@bufbuild/buf)
#   vault        HashiCorp Vault v1.13.0 (MPL-2.0), built from tools/vault
#   staticcheck  from the Go module proxy
#   spire        SPIRE v1.13.3 spire-server and spire-agent (Apache-2.0), from tools/spire
# Usage: bash .ci/tools.sh [buf] [vault] [staticcheck] [spire]   (prints each tool's path)
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=1.75.0
VAULT_VERSION=v1.13.0    # never v1.14.1 or later: those are BSL-licensed
STATICCHECK_VERSION=v0.8.2
SPIRE_VERSION=v1.13.3
cache="${XDG_CACHE_HOME:-$HOME/.cache}/writ"

tool_buf() {
  local dir="$cache/buf-$BUF_VERSION"
  if [ ! -x "$dir/node_modules/.bin/buf" ]; then
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --silent "@bufbuild/buf@$BUF_VERSION" >&2
  fi
  echo "$dir/node_modules/.bin/buf"
}

tool_vault() {
  local bin="$cache/vault-$VAULT_VERSION/vault"
  if [ ! -x "$bin" ]; then
    echo "building vault $VAULT_VERSION (first time on this machine: several minutes)" >&2
    mkdir -p "$(dirname "$bin")"
    (cd tools/vault && go build -trimpath -o "$bin.tmp" .) >&2
    mv "$bin.tmp" "$bin"
  fi
  echo "$bin"
}

tool_staticcheck() {
  local bin="$cache/staticcheck-$STATICCHECK_VERSION/staticcheck"
  if [ ! -x "$bin" ]; then
    GOBIN="$(dirname "$bin")" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" >&2
  fi
  echo "$bin"
}

# tool_spire prints the directory holding spire-server and spire-agent.
tool_spire() {
  local dir="$cache/spire-$SPIRE_VERSION"
  if [ ! -x "$dir/spire-server" ] || [ ! -x "$dir/spire-agent" ]; then
    echo "building spire $SPIRE_VERSION (first time on this machine: several minutes)" >&2
    mkdir -p "$dir.tmp"
    # One dependency is missing from the checksum database; its hash is pinned in tools/spire/go.sum.
    (cd tools/spire && GONOSUMDB=github.com/GoogleCloudPlatform/cloudsql-proxy GOBIN="$dir.tmp" \
      go install -trimpath github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent) >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

for t in "$@"; do
  case "$t" in
    buf|vault|staticcheck|spire) "tool_$t" ;;
    *) echo "unknown tool: $t" >&2; exit 2 ;;
  esac
done
