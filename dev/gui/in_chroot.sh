#!/bin/bash
# Inside the chroot: Xvfb, then the real Blender GUI running drive.py; the console goes to
# shots/blender_console.log. usage: in_chroot.sh <timeout seconds>
export LIBGL_ALWAYS_SOFTWARE=1
SHOTS="$GUI_WORK/shots"
mkdir -p "$SHOTS"
Xvfb :99 -screen 0 1920x1080x24 -nolisten tcp > "$SHOTS/xvfb.log" 2>&1 &
XPID=$!
for _ in $(seq 50); do
    DISPLAY=:99 xdotool getdisplaygeometry > /dev/null 2>&1 && break
    sleep 0.2
done
DISPLAY=:99 timeout "${1:-900}" blender --online-mode --python "$GUI_WORK/drive.py" > "$SHOTS/blender_console.log" 2>&1
CODE=$?
echo "blender exit: $CODE" >> "$SHOTS/blender_console.log"
kill "$XPID"
exit "$CODE"
