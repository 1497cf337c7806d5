#!/bin/busybox sh
# /init of the second-kernel test guest (busybox initramfs built by
# test/support/kernel-guest.ts; this file's bytes are part of the image cache key).
#
# It loads the kernel's own modules (listed in load order in /etc/qnh-modules),
# mounts the host's root (shared read-only over 9p, tag "hostroot") under a
# tmpfs overlay so that everything is writable inside the guest and nothing is
# written to the host, chroots into it and runs the repository's tests there
# with the host's pinned Node and node-tap, then powers off.
#
# Kernel command line parameters read here:
#   qnh_repo=DIR        the repository (same path on host and guest)
#   qnh_node=PATH       the Node binary to run (the host's pinned Node 24)
#   qnh_tag=TAG         value of QNH_KERNEL_GUEST in the tests' environment (e.g. 6.1)
#   qnh_p1=F1,F2,...    test files (relative to DIR) of phase 1
#   qnh_late=M1,M2,...  modules loaded only after phase 1 (e.g. vhost_net)
#   qnh_p2=F1,F2,...    test files of phase 2 (optional)
#   qnh_jobs=N          tap --jobs (default 2)
#   qnh_timeout=S       tap --timeout per file, seconds (default 300)
# Console protocol (ttyS0), one line each:
#   QNH-KGUEST-INFO: ...                    progress, for people
#   QNH-KGUEST-BEGIN: phase=N               then tap's TAP output of that phase
#   QNH-KGUEST-END: phase=N status=S        tap's exit status
#   QNH-KGUEST-DONE: status=S end           last line: 0 only when every phase passed;
#                                           90-99: the guest could not set itself up

/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
# Kernel messages would interleave with the TAP stream on the same console.
echo 1 >/proc/sys/kernel/printk

info() {
	echo "QNH-KGUEST-INFO: $*"
}

done_() {
	echo "QNH-KGUEST-DONE: status=$1 end"
	sync
	poweroff -f
	# Only reached if the ACPI power-off did not work (panic=-1 and -no-reboot end QEMU).
	echo o >/proc/sysrq-trigger
	exit 1
}

diag() {
	info "--- dmesg (tail) ---"
	dmesg 2>&1 | tail -n 30
}

repo= node= tag= p1= p2= late= jobs=2 timeout=300
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	qnh_repo=*) repo=${arg#qnh_repo=} ;;
	qnh_node=*) node=${arg#qnh_node=} ;;
	qnh_tag=*) tag=${arg#qnh_tag=} ;;
	qnh_p1=*) p1=${arg#qnh_p1=} ;;
	qnh_p2=*) p2=${arg#qnh_p2=} ;;
	qnh_late=*) late=${arg#qnh_late=} ;;
	qnh_jobs=*) jobs=${arg#qnh_jobs=} ;;
	qnh_timeout=*) timeout=${arg#qnh_timeout=} ;;
	esac
done
info "booted kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) mem=$(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
if [ -z "$repo" ] || [ -z "$node" ] || [ -z "$p1" ]; then
	info "missing qnh_repo=, qnh_node= or qnh_p1= on the kernel command line"
	done_ 90
fi

is_late() {
	case ",$late," in *",$1,"*) return 0 ;; esac
	return 1
}

# Modules, in dependency order, as listed by the image builder; the late ones wait for phase 2.
for m in $(cat /etc/qnh-modules); do
	is_late "$m" && continue
	out=$(insmod "/lib/modules/$m.ko" 2>&1) || info "insmod $m failed: $out"
done

# The host's root, read-only, under a tmpfs overlay: writes (node-tap's .tap/, a
# file-capability copy of node, ...) land in guest memory only.
mkdir -p /host /rw /newroot
if ! mount -t 9p -o ro,trans=virtio,version=9p2000.L,multidevs=remap,msize=262144,cache=loose hostroot /host; then
	info "cannot mount the 9p share hostroot"
	diag
	done_ 91
fi
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
if ! mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot; then
	info "cannot mount the overlay over the host's root"
	diag
	done_ 92
fi
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mkdir -p /newroot/run/netns /newroot/run/lock
# Nothing of the host's network state: the guest's own loopback only.
ip link set lo up
if [ ! -x "/newroot$node" ] || [ ! -d "/newroot$repo" ]; then
	info "$node or $repo is not there in the host's root"
	done_ 93
fi

phase() {
	n=$1
	files=$(echo "$2" | tr ',' ' ')
	echo "QNH-KGUEST-BEGIN: phase=$n"
	# The environment tests see: a clean one, as CI's (npm puts node_modules/.bin first).
	chroot /newroot /usr/bin/env -i \
		PATH="$repo/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
		HOME=/root LANG=C.UTF-8 TERM=dumb NO_COLOR=1 CI=true QNH_KERNEL_GUEST="$tag" \
		/bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$repo" \
		"$node" "$repo/node_modules/.bin/tap" --reporter=tap --no-color --jobs="$jobs" --timeout="$timeout" $files
	st=$?
	echo "QNH-KGUEST-END: phase=$n status=$st"
	return $st
}

status=0
start=$(cut -d. -f1 /proc/uptime)
phase 1 "$p1" || status=1
info "phase 1 took $(($(cut -d. -f1 /proc/uptime) - start)) s"
if [ -n "$late" ]; then
	for m in $(echo "$late" | tr ',' ' '); do
		out=$(insmod "/lib/modules/$m.ko" 2>&1) || info "insmod $m failed: $out"
	done
fi
if [ -n "$p2" ]; then
	start=$(cut -d. -f1 /proc/uptime)
	phase 2 "$p2" || status=1
	info "phase 2 took $(($(cut -d. -f1 /proc/uptime) - start)) s"
fi
if [ -n "$(ls /newroot/run/netns 2>/dev/null)" ]; then
	info "network namespaces left behind in the guest: $(ls /newroot/run/netns | tr '\n' ' ')"
	status=1
fi
done_ $status
