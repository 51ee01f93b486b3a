#!/usr/bin/env bash
# The honest proof that scripts/install-deps.sh is complete: debootstraps a
# minimal Debian 12 into a folder, copies the committed tree into it, and
# runs install-deps and `make build` there with chroot, so that nothing
# installed by hand on this machine can help. Needs root and Debian's
# mirror; takes minutes (outside CI's budget). Usage:
#   scripts/check-clean-install.sh [ROOT_DIR [TARGET]]
# ROOT_DIR defaults to /var/tmp/gati-clean-root, TARGET (the make target run
# in the chroot) to build; `test` runs the whole suite there.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${1:-/var/tmp/gati-clean-root}
TARGET=${2:-build}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [[ $(id -u) -ne 0 ]]; then
  echo "check-clean-install: needs root (debootstrap, chroot, mount)" >&2
  exit 2
fi
unmount() {
  local failed=0
  for dir in dev sys proc; do
    if mountpoint -q "$ROOT/$dir"; then umount -R "$ROOT/$dir" || failed=1; fi
  done
  return $failed
}
trap unmount EXIT
unmount || { echo "check-clean-install: cannot unmount under $ROOT" >&2; exit 1; }
# --one-file-system: never into a mount that is still there.
rm -rf --one-file-system "$ROOT"
start=$(date +%s)
echo "check-clean-install: debootstrap bookworm (minbase) into $ROOT"
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 ||
  { tail -20 "$ROOT.debootstrap.log" >&2; exit 1; }
mount -t proc proc "$ROOT/proc"
# rslave: nothing unmounted under the chroot propagates back to the host.
mount --rbind /sys "$ROOT/sys" && mount --make-rslave "$ROOT/sys"
mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mkdir -p "$ROOT/src/gati"
# The committed tree only, as a clone has it.
git -C "$HERE" archive HEAD | tar -x -C "$ROOT/src/gati"
bootstrapped=$(date +%s)
echo "check-clean-install: debootstrap took $((bootstrapped - start)) s; install-deps and make $TARGET in the chroot"
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root CI=true \
  bash -c "cd /src/gati && bash scripts/install-deps.sh && make $TARGET JOBS=$(nproc)" </dev/null
built=$(date +%s)
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  bash -c "cd /src/gati && build/gati info models/resnet20.pt --repetitions 5 --warmup 2 | head -3"
echo "check-clean-install: OK: install-deps and make $TARGET passed on a minimal Debian 12" \
  "(debootstrap $((bootstrapped - start)) s, install and make $TARGET $((built - bootstrapped)) s)"
