#!/usr/bin/env bash
# Builds the drainproxy container image without a Docker daemon or a registry.
#
#   tests/container/build_and_run.sh            # base image if missing, then the image
#   tests/container/build_and_run.sh --base     # only make sure the base image exists
#
# 1. Base image: no registry is reachable here, so `debian:bookworm-slim` is made locally with
#    debootstrap (variant minbase) from the Debian mirror apt already uses on this machine, tidied
#    like the official slim image (no docs/man/locales, empty apt lists) and imported into the
#    containers storage as docker.io/library/debian:bookworm-slim. The rootfs tarball is kept in
#    $DRAINPROXY_CONTAINER_CACHE (default ~/.cache/drainproxy-container), so it is debootstrapped once
#    per machine; the import happens only when the image is missing from the storage.
# 2. Project image: `buildah bud --isolation chroot --network host --layers --pull=never`, tagged
#    $DRAINPROXY_IMAGE (default drainproxy:test). --layers keeps every step as a cached layer, so a
#    rebuild with unchanged sources takes seconds; the apt layers survive source changes, and a
#    ccache cache mount (/var/tmp/buildah-cache-*) makes a rebuild after a source change recompile
#    only what changed. The build stage is tagged $DRAINPROXY_IMAGE-build; the two images a build
#    supersedes are removed by id.
#
# Needs root (or working user namespaces) and: buildah podman debootstrap (runc for running it).
# Install them with:  apt-get install -y buildah podman runc debootstrap
# Idempotent, and safe to run concurrently (a lock serialises runs).
#
# Env: DRAINPROXY_IMAGE, DRAINPROXY_CONTAINER_CACHE, DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

image=${DRAINPROXY_IMAGE:-drainproxy:test}
base=docker.io/library/debian:bookworm-slim
suite=bookworm
cache=${DRAINPROXY_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/drainproxy-container}
tarball=$cache/debian-$suite-slim-rootfs.tar

only_base=0
case "${1:-}" in
  "") ;;
  --base) only_base=1 ;;
  -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
  *) echo "build_and_run.sh: unknown argument '$1' (--base or nothing)" >&2; exit 2 ;;
esac

log() { echo "build_and_run: $*" >&2; }

for tool in buildah podman; do
  command -v "$tool" >/dev/null || { log "$tool is missing (apt-get install -y buildah podman runc debootstrap)"; exit 3; }
done

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

# The Debian mirror apt uses on this machine (deb822 .sources or one-line .list), for debootstrap
# and for the apt-get steps inside the build, which run with the host's network.
apt_uris() {
  {
    awk '/^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i }' /etc/apt/sources.list.d/*.sources 2>/dev/null
    awk '/^[[:space:]]*deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } || true
}
mirror=${DEBIAN_MIRROR:-$(apt_uris | grep -E '/debian/?$' | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
security=${DEBIAN_SECURITY_MIRROR:-$(apt_uris | grep -E '/debian-security/?$' | head -n1)}
security=${security:-${mirror}-security}
security=${security%/}

make_rootfs_tarball() {
  command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install -y debootstrap)"; exit 3; }
  local work
  work=$(mktemp -d "$cache/rootfs.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  log "debootstrap --variant=minbase $suite from $mirror (once per machine, ~2 min)"
  if ! debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
  fi
  local r=$work/rootfs
  # Tidy it like the official slim image.
  rm -f "$r/etc/apt/sources.list"
  cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$r/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$r/etc/apt/apt.conf.d/docker-no-languages"
  find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$r"/usr/share/{man,groff,info,lintian,linda}/*
  find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/*
  mkdir -p "$r/var/lib/apt/lists/partial"
  rm -rf "${r:?}"/dev/* "${r:?}"/proc/* "${r:?}"/sys/* "${r:?}"/run/* "${r:?}"/tmp/* "${r:?}"/var/tmp/* "${r:?}/var/log/bootstrap.log"
  find "$r/var/log" -type f -exec truncate -s 0 {} +
  : >"$r/etc/resolv.conf"
  : >"$r/etc/machine-id"
  echo localhost >"$r/etc/hostname"
  tar --numeric-owner -C "$r" -cf "$work/rootfs.tar" .
  mv "$work/rootfs.tar" "$tarball"
  rm -rf "$work"
  trap - EXIT
  log "cached base rootfs: $tarball ($(du -h "$tarball" | cut -f1))"
}

if podman image exists "$base"; then
  log "base image $base present"
else
  [ -s "$tarball" ] || make_rootfs_tarball
  log "importing $tarball as $base"
  podman import --change 'CMD ["bash"]' --message "debootstrap minbase $suite ($mirror)" \
    "$tarball" "$base" >/dev/null
fi
[ "$only_base" = 1 ] && exit 0

log "buildah bud -> $image"
start=$(date +%s)
image_id() { podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
all_ids() { podman images "$@" --quiet --no-trunc 2>/dev/null | sed 's/^sha256://' | tr '\n' ' '; }
old_ids=("$(image_id "$image")" "$(image_id "$image-build")")
ids_before=" $(all_ids --all) "
# buildah leaves its working containers behind when it is interrupted (Ctrl-C, a test's timeout):
# remove the ones this run created.
before=" $(buildah containers --quiet --notruncate 2>/dev/null | tr '\n' ' ') "
on_signal() {
  local id
  for id in $(buildah containers --quiet --notruncate 2>/dev/null); do
    [[ $before == *" $id "* ]] || buildah rm "$id" >/dev/null 2>&1 || true
  done
  log "interrupted"
  exit 130
}
trap on_signal INT TERM
bud=(buildah bud --isolation chroot --network host --layers --pull=never --format docker -f "$root/Dockerfile")
"${bud[@]}" -t "$image" "$root" >&2
# Tag the build stage too (every step cached: a second), so that the cached apt and compile layers
# stay reachable while the images this build superseded are removed (with their now unused
# intermediate layers; without this, every source change would leave ~0.9 GB behind).
"${bud[@]}" --target build -t "$image-build" "$root" >/dev/null 2>&1 || log "could not tag the build stage"
new_ids=" $(image_id "$image") $(image_id "$image-build") "
for id in "${old_ids[@]}"; do
  if [ -n "$id" ] && [[ $new_ids != *" $id "* ]]; then
    podman rmi "$id" >/dev/null 2>&1 || log "could not remove the superseded image $id"
  fi
done
# When the sources changed between the two buds, the first one's build stage is left untagged:
# remove the untagged leaf images this run created.
for id in $(all_ids --filter dangling=true); do
  [[ $ids_before == *" $id "* ]] || podman rmi "$id" >/dev/null 2>&1 || true
done
trap - INT TERM
log "built $image in $(( $(date +%s) - start ))s; size $(podman image inspect --format '{{.Size}}' "$image") bytes"
