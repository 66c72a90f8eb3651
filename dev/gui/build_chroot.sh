#!/usr/bin/env bash
# Build (once) a Debian trixie chroot with Debian's Blender 4.3.2 and the X tools the GUI
# scripts use (Xvfb, xdotool, ImageMagick). It lives outside the repository, in
# ${CLOUD_RENDER_GUI_CACHE:-~/.cache/cloud-render-gui}/chroot, and is reused while its stamp
# exists. Needs root (debootstrap, chroot, mounts): exits 3 with a plain message otherwise.
set -euo pipefail
CACHE="${CLOUD_RENDER_GUI_CACHE:-$HOME/.cache/cloud-render-gui}"
CHROOT="$CACHE/chroot"
STAMP="$CACHE/chroot.ready"
# numpy: Blender's own builds bundle it (the add-on may use it); Debian's package leaves it out.
PACKAGES="blender xvfb xauth xdotool imagemagick libgl1-mesa-dri libglx-mesa0 libegl-mesa0 python3 python3-numpy"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PACKAGES" ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "GUI CHROOT NOT BUILT: building the Blender GUI chroot needs root (debootstrap, chroot, mounts)." >&2
    exit 3
fi
# The Debian mirror this machine's apt already uses (its main archive, not security).
MIRROR="${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -1 | tr -d ' ' || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
mkdir -p "$CACHE"
if [ ! -x "$CHROOT/usr/bin/apt-get" ]; then
    rm -rf "$CHROOT.partial"
    debootstrap --variant=minbase trixie "$CHROOT.partial" "$MIRROR"
    mv "$CHROOT.partial" "$CHROOT"
fi
"$(dirname "$0")/chroot_mounts.sh" up
cp /etc/resolv.conf "$CHROOT/etc/"
chroot "$CHROOT" apt-get update -q
# shellcheck disable=SC2086
chroot "$CHROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES
chroot "$CHROOT" apt-get clean
echo "$PACKAGES" > "$STAMP"
echo "GUI chroot ready: $CHROOT"
