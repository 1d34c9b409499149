#!/usr/bin/env bash
# Builds the sei-operator container image as an OCI image archive (a tar of an OCI image layout),
# without a daemon, root or a base image, with umoci (Debian's package, fetched with
# `apt-get download` into a cache directory; a no-op when cached).
#
#   deploy/image/build.sh BINARY OUT_ARCHIVE     # prints OUT_ARCHIVE's path on its last line
#
# BINARY is a release build of sei-operator (x86_64, glibc, dynamically linked); it is stripped into
# the image with exactly the shared libraries `ldd` lists. The image is tagged with the binary's
# version (`BINARY --version`). Timestamps are SOURCE_DATE_EPOCH if set, else the commit time of the
# repository's HEAD, so that the same inputs give the same archive byte for byte.
#
# Environment: SOURCE_DATE_EPOCH, SEI_IMAGE_SOURCE (org.opencontainers.image.source; default: the
# `repository` of Cargo.toml, else the git remote `origin`), SEI_UMOCI_VERSION (the Debian version
# of umoci, default below), XDG_CACHE_HOME, TMPDIR.
set -euo pipefail

log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

[ $# -eq 2 ] || { echo "usage: $0 BINARY OUT_ARCHIVE" >&2; exit 2; }
binary=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
t_start=$SECONDS

# The Debian version of umoci. Pinned because the layer and manifest bytes depend on the tool, and
# the flags below are those of 0.4.7; bump it (and check them) to move on.
umoci_version=${SEI_UMOCI_VERSION:-0.4.7+ds-3+b7}
# The image's non-root user and the directory it owns.
uid=65532
gid=65532
cache_dir=/var/cache/sei-operator

for tool in apt-get dpkg-deb ldd strip tar gzip readlink touch find du stat od date; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed (it is needed to build the image)"
done
[ -f "$binary" ] && [ -x "$binary" ] || die "BINARY '$binary' is not an executable file"
binary=$(readlink -f "$binary")

# The binary must be an x86_64 ELF: the library paths below are x86_64 Debian/Ubuntu ones.
[ "$(od -An -tx1 -N4 "$binary" | tr -d ' \n')" = 7f454c46 ] || die "$binary is not an ELF file"
[ "$(od -An -tx1 -j18 -N2 "$binary" | tr -d ' \n')" = 3e00 ] || die "$binary is not an x86_64 executable"

version=$("$binary" --version | awk 'NR==1 {print $2}') || die "'$binary --version' failed"
[[ $version =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]] || die "'$binary --version' gave '$version', which is not a valid image tag"

# Reproducible timestamps.
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  [[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH='$SOURCE_DATE_EPOCH' is not a number of seconds"
  epoch=$SOURCE_DATE_EPOCH
  epoch_from=SOURCE_DATE_EPOCH
else
  epoch=$(git -C "$repo" log -1 --format=%ct HEAD 2>&1) \
    || die "cannot read the commit time of HEAD in $repo (${epoch//$'\n'/ }): set SOURCE_DATE_EPOCH for the image timestamps"
  epoch_from="commit time of HEAD ($(git -C "$repo" rev-parse --short HEAD))"
fi
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

# Metadata from Cargo.toml: license of [workspace.package] (else [package]), repository likewise.
cargo_field() { # FIELD: the quoted value of FIELD in [workspace.package], else in [package]
  local section
  for section in workspace.package package; do
    awk -v s="[$section]" -v f="$1" '
      /^\[/ { in_s = ($0 == s); next }
      in_s && $1 == f && $2 == "=" { v = $0; sub(/^[^=]*=[ \t]*"/, "", v); sub(/".*$/, "", v); print v; exit }
    ' "$repo/Cargo.toml"
  done | head -n1
}
license=$(cargo_field license)
source_url=${SEI_IMAGE_SOURCE:-$(cargo_field repository)}
if [ -z "$source_url" ]; then
  source_url=$(git -C "$repo" config --get remote.origin.url 2>/dev/null || true)
  source_url=$(sed -E 's#^git@([^:]+):#https://\1/#; s#\.git$##' <<<"$source_url")
fi

# --- umoci, from Debian's package, unpacked into a cache directory (no root, no system install) ---
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/sei-operator/debs
umoci_dir=$cache_root/umoci-$umoci_version
umoci=$umoci_dir/usr/bin/umoci

work=$(mktemp -d "${TMPDIR:-/tmp}/sei-operator-image.XXXXXX")
tmp_out=
cleanup() {
  rm -rf "$work"
  if [ -n "$tmp_out" ]; then rm -f "$tmp_out"; fi
}
trap cleanup EXIT

if [ -x "$umoci" ]; then
  log "umoci $umoci_version: cached in $umoci_dir"
else
  log "fetching umoci $umoci_version: apt-get download umoci=$umoci_version (in $work/deb)"
  mkdir -p "$work/deb"
  if ! (cd "$work/deb" && apt-get download -q "umoci=$umoci_version") >"$work/apt.log" 2>&1; then
    cat "$work/apt.log" >&2
    if ! apt-cache show umoci >/dev/null 2>&1; then
      die "apt does not know the package 'umoci': the package lists are missing or stale; run 'apt-get update' (as root) and retry"
    fi
    die "apt-get download umoci=$umoci_version failed; apt knows: $(apt-cache madison umoci 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); printf "%s ", $2}')(set SEI_UMOCI_VERSION to use another version)"
  fi
  sed 's/^/    /' "$work/apt.log" >&2
  deb=$(find "$work/deb" -name 'umoci_*.deb' | head -n1)
  [ -n "$deb" ] || die "apt-get download did not write a umoci_*.deb"
  got=$(dpkg-deb -f "$deb" Version)
  [ "$got" = "$umoci_version" ] || die "apt-get download gave umoci $got, not $umoci_version"
  log "unpacking $(basename "$deb") into $umoci_dir (dpkg-deb -x)"
  mkdir -p "$cache_root"
  rm -rf "$umoci_dir.partial"
  dpkg-deb -x "$deb" "$umoci_dir.partial"
  "$umoci_dir.partial/usr/bin/umoci" --version >/dev/null || die "the unpacked umoci does not run"
  rm -rf "$umoci_dir"
  mv "$umoci_dir.partial" "$umoci_dir"
fi
log "$("$umoci" --version)"

# --- an empty image, unpacked rootless ---
layout=$work/layout
bundle=$work/bundle
rootfs=$bundle/rootfs
log "building sei-operator $version from $binary (timestamps: $created, $epoch_from)"
"$umoci" init --layout "$layout"
"$umoci" new --image "$layout:$version"
# --rootless: no root needed; umoci records the caller as uid/gid 0 of the image, so every file of
# the layer is root-owned whoever builds it. Other owners are given with umoci's
# "user.rootlesscontainers" xattr (below).
"$umoci" unpack --rootless --image "$layout:$version" "$bundle"

# --- the root filesystem: the binary, its libraries, users, NSS config, two directories ---
dir() { # MODE PATH...
  local mode=$1; shift
  mkdir -p "$@"
  chmod "$mode" "$@"
}
dir 0755 "$rootfs" "$rootfs/etc" "$rootfs/lib" "$rootfs/lib/x86_64-linux-gnu" "$rootfs/lib64" "$rootfs/var" "$rootfs/var/cache"

strip --strip-all -o "$rootfs/sei-operator" "$binary"
chmod 0755 "$rootfs/sei-operator"

# Exactly the libraries the dynamic loader resolves for the binary, as real files (symlinks
# resolved) at the paths the loader looks them up at.
ldd_out=$(ldd "$binary" 2>&1) || die "ldd $binary failed: $ldd_out"
libs=()
while IFS= read -r line; do
  line=${line#"${line%%[![:space:]]*}"}
  case $line in
    linux-vdso.so.*) ;; # provided by the kernel
    *"not found"*) die "ldd: a library of the binary is missing on this machine: $line" ;;
    *" => /"*" (0x"*)
      soname=${line%% => *}
      path=${line#* => }; path=${path%% (0x*}
      [[ $soname =~ ^[A-Za-z0-9._+-]+\.so(\.[0-9]+)*$ ]] || die "ldd: unexpected library name in '$line'"
      libs+=("$path|/lib/x86_64-linux-gnu/$soname") ;;
    /lib64/ld-linux-x86-64.so.2" (0x"*)
      libs+=("/lib64/ld-linux-x86-64.so.2|/lib64/ld-linux-x86-64.so.2") ;;
    *) die "ldd: unexpected line (only glibc's own libraries and libgcc_s are expected): $line" ;;
  esac
done <<<"$ldd_out"
for entry in "${libs[@]}"; do
  src=$(readlink -f "${entry%%|*}")
  dest=${entry#*|}
  [ -f "$src" ] || die "ldd listed ${entry%%|*}, which is not a file"
  cp "$src" "$rootfs$dest"
  case $dest in
    /lib64/ld-linux-*) chmod 0755 "$rootfs$dest" ;; # the interpreter must be executable
    *) chmod 0644 "$rootfs$dest" ;;
  esac
  log "  $dest <- $src"
done

cat >"$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:$uid:$gid:nonroot:/nonexistent:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<EOF
root:x:0:
nonroot:x:$gid:
EOF
# glibc 2.34+ has the files and dns NSS modules built in, so no libnss_* are needed.
cat >"$rootfs/etc/nsswitch.conf" <<EOF
passwd: files
group: files
hosts: files dns
EOF
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"

dir 1777 "$rootfs/tmp"
dir 0700 "$rootfs$cache_dir"
# Owner 65532:65532 in the layer, whatever the builder's uid: umoci's rootless mode reads the
# in-image owner from the "user.rootlesscontainers" xattr (a protobuf {uint32 uid = 1; uint32 gid = 2})
# and drops the xattr from the layer.
varint() {
  local n=$1 hex=
  while (( n >= 128 )); do hex+=$(printf '%02x' $(( (n & 127) | 128 ))); n=$(( n >> 7 )); done
  printf '%s%02x' "$hex" "$n"
}
owner_xattr=08$(varint $uid)10$(varint $gid)
if command -v setfattr >/dev/null; then
  setfattr -n user.rootlesscontainers -v "0x$owner_xattr" "$rootfs$cache_dir"
elif command -v python3 >/dev/null; then
  python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.rootlesscontainers", bytes.fromhex(sys.argv[2]))' \
    "$rootfs$cache_dir" "$owner_xattr"
else
  die "neither setfattr (package attr) nor python3 is installed: one is needed to set the owner of $cache_dir"
fi || die "cannot set a user.* xattr under $work: use a TMPDIR on a file system with user xattrs (ext4, xfs, btrfs, tmpfs on Linux >= 6.6)"

find "$rootfs" -exec touch -h -d "@$epoch" {} +
rootfs_bytes=$(du -sb "$rootfs" | cut -f1)

# --- one layer, then the configuration ---
"$umoci" repack --image "$layout:$version" \
  --history.created "$created" --history.created_by "deploy/image/build.sh" \
  --history.comment "sei-operator $version, its shared libraries, users, nsswitch.conf, /tmp, $cache_dir" \
  "$bundle"

annotations=(
  "org.opencontainers.image.title=sei-operator"
  "org.opencontainers.image.version=$version"
)
if [ -n "$source_url" ]; then
  annotations+=("org.opencontainers.image.source=$source_url")
else
  log "no org.opencontainers.image.source: set SEI_IMAGE_SOURCE, or 'repository' in Cargo.toml, or a git remote 'origin'"
fi
if [ -n "$license" ]; then
  annotations+=("org.opencontainers.image.licenses=$license")
else
  log "no org.opencontainers.image.licenses: Cargo.toml has no license"
fi
config_args=(
  --no-history
  --created "$created"
  --architecture amd64 --os linux
  --config.user "$uid:$gid"
  --config.entrypoint /sei-operator
  --config.cmd run
  --config.workingdir /
  --config.env "SEI_MODULE_CACHE=$cache_dir/modules"
  --config.exposedports 8080/tcp
)
for a in "${annotations[@]}"; do
  config_args+=(--config.label "$a" --manifest.annotation "$a")
done
"$umoci" config --image "$layout:$version" "${config_args[@]}"
# Drop the blobs the steps above superseded (the empty image's config, earlier manifests).
"$umoci" gc --layout "$layout"

# --- check the layer: every file root-owned but the cache directory ---
manifest=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$layout/index.json" | cut -d: -f3 | tr -d '"')
[ "$(wc -w <<<"$manifest")" = 1 ] || die "expected one manifest in index.json, found: $manifest"
layers=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$layout/blobs/sha256/$manifest" | sed 1d | cut -d: -f3 | tr -d '"')
[ "$(wc -w <<<"$layers")" = 1 ] || die "expected one layer in the manifest, found: $layers"
listing=$(tar -tvzf "$layout/blobs/sha256/$layers" --numeric-owner)
bad=$(awk -v c="${cache_dir#/}" '
  { name = $6; sub(/\/$/, "", name); sub(/^\.\//, "", name) }
  name == c { if ($2 != "'"$uid/$gid"'" || $1 != "drwx------") print; next }
  $2 != "0/0" { print }
' <<<"$listing")
[ -z "$bad" ] || die "unexpected owners in the layer:
$bad"
log "layer sha256:$layers:"
sed 's/^/    /' <<<"$listing" >&2

# --- the archive: sorted, numeric owner 0, fixed mtime and modes, written atomically ---
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
tmp_out=$(mktemp "$out.XXXXXX.partial")
tar -C "$layout" --format=gnu --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  --mode=u+rw,go+r,go-w,a+X -cf "$tmp_out" oci-layout index.json blobs
chmod 0644 "$tmp_out"
mv "$tmp_out" "$out"
tmp_out=

archive_bytes=$(stat -c %s "$out")
human() { numfmt --to=iec-i --suffix=B "$1" 2>/dev/null || echo "$1 bytes"; }
log "wrote $out: $(human "$archive_bytes") ($archive_bytes bytes); rootfs $(human "$rootfs_bytes") ($rootfs_bytes bytes) uncompressed; tag $version; manifest sha256:$manifest; $((SECONDS - t_start))s"
echo "$out"
