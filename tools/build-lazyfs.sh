#!/bin/sh
# Build LazyFS (https://github.com/dsrhaslab/lazyfs) for `keel crashtest --power-loss`.
#
# Usage: tools/build-lazyfs.sh [SOURCE_DIR] [DEST_DIR]
#   SOURCE_DIR  a LazyFS checkout (with lazyfs/ and libs/); default: cloned into
#               DEST_DIR/source at LAZYFS_COMMIT
#   DEST_DIR    default /tmp/lazyfs; the binary ends up at DEST_DIR/lazyfs
#
# On Debian 12 / Ubuntu 22.04 or later. Installs with apt-get (root or sudo):
#   cmake g++ make pkg-config git fuse3 libfuse3-dev libtoml11-dev libspdlog-dev libfmt-dev
# LazyFS's own CMake files download toml11 v3.7.1 and spdlog v1.10.0 at configure time;
# this builds against Debian's packages of the same versions instead (bookworm ships
# exactly those), so only the package archive and the LazyFS repository are needed.
# Then: keel crashtest --power-loss --lazyfs DEST_DIR/lazyfs
# FUSE needs /dev/fuse and, unless you are root, the fuse3 setuid fusermount3.
set -eu

LAZYFS_URL=https://github.com/dsrhaslab/lazyfs
# main as of 2024-06-28; the FIFO handshake in tools/crashtest/lazyfs.py follows its main.cpp.
LAZYFS_COMMIT=${LAZYFS_COMMIT:-a47a5baea559020f29902662de77764b0cbd62ce}
PACKAGES="cmake g++ make pkg-config git fuse3 libfuse3-dev libtoml11-dev libspdlog-dev libfmt-dev"

DEST=${2:-/tmp/lazyfs}
SOURCE=${1:-$DEST/source}
BUILD=$DEST/build
mkdir -p "$DEST"

missing=""
for package in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $package"
done
if [ -n "$missing" ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "build-lazyfs: apt-get install$missing" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
fi

if [ ! -f "$SOURCE/lazyfs/src/main.cpp" ]; then
    echo "build-lazyfs: cloning $LAZYFS_URL at $LAZYFS_COMMIT into $SOURCE" >&2
    rm -rf "$SOURCE"
    git clone -q "$LAZYFS_URL" "$SOURCE"
    git -C "$SOURCE" checkout -q "$LAZYFS_COMMIT"
fi

# Build in a copy, so that the checkout stays as it is.
rm -rf "$BUILD"
mkdir -p "$BUILD"
cp -r "$SOURCE/lazyfs" "$SOURCE/libs" "$BUILD/"

# Point both CMake files at the installed toml11, spdlog and fmt instead of FetchContent.
python3 - "$BUILD/libs/libpcache/CMakeLists.txt" "$BUILD/lazyfs/CMakeLists.txt" <<'EOF'
import sys
pcache_path, lazyfs_path = sys.argv[1:]
packages = "find_package(toml11 REQUIRED)\nfind_package(spdlog REQUIRED)\nfind_package(fmt REQUIRED)\n"

text = open(pcache_path).read()
fetch_start = text.index("include(FetchContent)")
fetch_end = text.index("\n", text.index("set_target_properties(spdlog")) + 1
text = text[:fetch_start] + packages + text[fetch_end:]
old_link = "target_link_libraries(pcache toml11::toml11 spdlog)"
assert old_link in text, f"{pcache_path}: {old_link!r} not found (another LazyFS version?)"
text = text.replace(old_link, "target_link_libraries(pcache toml11::toml11 spdlog::spdlog fmt::fmt)")
open(pcache_path, "w").write(text)

text = open(lazyfs_path).read()
old_find = "find_package(Threads REQUIRED)"
old_link = "target_link_libraries(${CMAKE_PROJECT_NAME} fuse3 Threads::Threads libpcache.so)"
assert old_find in text and old_link in text, f"{lazyfs_path}: not the expected CMake file"
text = text.replace(old_find, old_find + "\n" + packages)
text = text.replace(old_link, old_link[:-1] + " spdlog::spdlog fmt::fmt)")
open(lazyfs_path, "w").write(text)
EOF

jobs=$(nproc 2>/dev/null || echo 2)
echo "build-lazyfs: building libpcache and lazyfs in $BUILD (log: $DEST/build.log)" >&2
{
    cmake -S "$BUILD/libs/libpcache" -B "$BUILD/libs/libpcache/build" -DCMAKE_BUILD_TYPE=Release
    cmake --build "$BUILD/libs/libpcache/build" -j "$jobs"
    # lazyfs/CMakeLists.txt finds libpcache.so at ../libs/libpcache/build.
    cmake -S "$BUILD/lazyfs" -B "$BUILD/lazyfs/build" -DCMAKE_BUILD_TYPE=Release \
        -DLAZYFS_BUILD_TESTS=OFF
    cmake --build "$BUILD/lazyfs/build" -j "$jobs"
} > "$DEST/build.log" 2>&1 || {
    tail -20 "$DEST/build.log" >&2
    echo "build-lazyfs: the build failed; the whole log is $DEST/build.log" >&2
    exit 1
}
ln -sfn "$BUILD/lazyfs/build/lazyfs" "$DEST/lazyfs"
if ldd "$DEST/lazyfs" | grep -q "not found"; then
    ldd "$DEST/lazyfs" >&2
    echo "build-lazyfs: $DEST/lazyfs is missing shared libraries" >&2
    exit 1
fi
echo "build-lazyfs: LazyFS is at $DEST/lazyfs" >&2
