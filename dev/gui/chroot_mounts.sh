#!/usr/bin/env bash
# Mount (up) or unmount (down) /proc, /sys and /dev inside the GUI chroot. Idempotent.
set -euo pipefail
CACHE="${CLOUD_RENDER_GUI_CACHE:-$HOME/.cache/cloud-render-gui}"
CHROOT="$CACHE/chroot"
case "${1:-up}" in
up)
    mountpoint -q "$CHROOT/proc" || mount -t proc proc "$CHROOT/proc"
    mountpoint -q "$CHROOT/sys" || mount -t sysfs sysfs "$CHROOT/sys"
    mountpoint -q "$CHROOT/dev" || { mount --rbind /dev "$CHROOT/dev"; mount --make-rslave "$CHROOT/dev"; }
    [ -e "$CHROOT/etc/mtab" ] || ln -s ../proc/self/mounts "$CHROOT/etc/mtab"
    ;;
down)
    mountpoint -q "$CHROOT/dev" && umount -R "$CHROOT/dev"
    mountpoint -q "$CHROOT/proc" && umount "$CHROOT/proc"
    mountpoint -q "$CHROOT/sys" && umount "$CHROOT/sys"
    true
    ;;
esac
