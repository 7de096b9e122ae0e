# Shared by the entry points in tools/: install what is missing, configure and build.
# Source it; it defines MOAT_ROOT and the moat_* functions. Works from any directory.

MOAT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Every Debian package the build, the tests and the demo use.
MOAT_PACKAGES=(
    g++ pkg-config meson ninja-build python3
    dpdk dpdk-dev libdpdk-dev
    libhyperscan-dev libinih-dev nlohmann-json3-dev libcpp-httplib-dev
    libgtest-dev libbenchmark-dev libpcap-dev clang libclang-rt-14-dev
    iproute2 ethtool iputils-ping curl xz-utils
)

moat_say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
moat_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the packages of MOAT_PACKAGES (and any given as arguments) that are missing.
moat_install() {
    local missing=() p
    for p in "${MOAT_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    moat_say "installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}"
}

# Configures (once) and builds the tree in build directory $1 (default: build/).
# Further arguments are meson options for a first configuration.
moat_build() {
    local dir="${1:-$MOAT_ROOT/build}"
    shift || true
    if [ ! -f "$dir/build.ninja" ]; then
        moat_say "configuring $dir"
        meson setup "$dir" "$MOAT_ROOT" "$@"
    fi
    moat_say "building $dir"
    ninja -C "$dir"
}
