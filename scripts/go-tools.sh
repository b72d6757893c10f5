# Sourced by the tool build scripts: the tools cache and two idempotent ways to fill it.
#   tools_bin                          the cache's bin directory ($bin), created
#   install_go_tool NAME MODULE VER    go install MODULE@VER as NAME, unless that version is there
#   build_go_dir NAME DIR              go build keyward's Go program in DIR, when its sources changed
command -v go >/dev/null 2>&1 || { echo "$(basename "$0"): Go 1.26 or newer is needed (https://go.dev/dl/)" >&2; exit 1; }

bin="${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}/tools/bin"
mkdir -p "$bin"

install_go_tool() {
  local name="$1" module="$2" version="$3"
  if [[ -x "$bin/$name" ]] && [[ "$(cat "$bin/.$name-version" 2>/dev/null)" == "$version" ]]; then
    echo "$name $version: cached in $bin"
  else
    echo "$name $version: building into $bin"
    GOBIN="$bin" GOFLAGS=-buildvcs=false go install "$module@$version"
    echo "$version" >"$bin/.$name-version"
  fi
}

# Rebuilt when the sources change: hash of go.mod, go.sum and *.go.
build_go_dir() {
  local name="$1" src="$2" hash sum=(sha256sum)
  command -v sha256sum >/dev/null 2>&1 || sum=(shasum -a 256)
  hash="$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | "${sum[@]}" | cut -c1-16)"
  if [[ -x "$bin/$name" ]] && [[ "$(cat "$bin/.$name-hash" 2>/dev/null)" == "$hash" ]]; then
    echo "$name: cached in $bin"
  else
    echo "$name: building into $bin"
    (cd "$src" && go build -buildvcs=false -o "$bin/$name" .)
    echo "$hash" >"$bin/.$name-hash"
  fi
}
