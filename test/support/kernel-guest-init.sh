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
#   qnh_repo=DIR          the repository (same path on host and guest)
#   qnh_node=PATH         the Node binary to run (the host's pinned Node 24)
#   qnh_tag=TAG           value of QNH_KERNEL_GUEST in the tests' environment (e.g. 6.1)
#   qnh_pN=F1,F2,...      test files (relative to DIR) of phase N (N = 1..4, run in order)
#   qnh_pN_with=M1,M2     modules loaded only for phase N (unloaded after it); e.g.
#                         vhost_net, whose /dev/vhost-net the other phases must not see
#   qnh_jobs=N            tap --jobs (default 2)
#   qnh_timeout=S         tap --timeout per file, seconds (default 300)
#   qnh_cache=1           Node's compile cache on the 9p share "qnhcache" (a host directory
#                         kept between runs) instead of in guest memory
# Console protocol (ttyS0), one line each:
#   QNH-KGUEST-INFO: ...                    progress, for people
#   QNH-KGUEST-BEGIN: phase=N               then tap's TAP output of that phase
#   QNH-KGUEST-END: phase=N status=S        tap's exit status
#   QNH-KGUEST-STDERR: phase=N LINE         the tests' stderr (last 400 lines), after the phase
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

repo= node= tag= jobs=2 timeout=300 cache=
p1= p2= p3= p4= p1_with= p2_with= p3_with= p4_with=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	qnh_repo=*) repo=${arg#qnh_repo=} ;;
	qnh_node=*) node=${arg#qnh_node=} ;;
	qnh_tag=*) tag=${arg#qnh_tag=} ;;
	qnh_p[1-4]=* | qnh_p[1-4]_with=*) kv=${arg#qnh_} && eval "${kv%%=*}=\${kv#*=}" ;;
	qnh_jobs=*) jobs=${arg#qnh_jobs=} ;;
	qnh_timeout=*) timeout=${arg#qnh_timeout=} ;;
	qnh_cache=*) cache=${arg#qnh_cache=} ;;
	esac
done
info "booted kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) mem=$(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
if [ -z "$repo" ] || [ -z "$node" ] || [ -z "$p1" ]; then
	info "missing qnh_repo=, qnh_node= or qnh_p1= on the kernel command line"
	done_ 90
fi

# Modules, in dependency order, as listed by the image builder; those of a phase wait for it.
later=",$p1_with,$p2_with,$p3_with,$p4_with,"
for m in $(cat /etc/qnh-modules); do
	case "$later" in *",$m,"*) continue ;; esac
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
# A checkout under /tmp (a CI clone) must stay visible under the guest's own /tmp.
keep=
case "$repo" in /tmp/*)
	mkdir -p /rw/repo-keep && mount -o bind "/newroot$repo" /rw/repo-keep && keep=1 ;;
esac
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
if [ -n "$keep" ]; then
	mkdir -p "/newroot$repo" && mount -o bind /rw/repo-keep "/newroot$repo" || info "cannot keep $repo visible under the guest's /tmp"
fi
mkdir -p /newroot/tmp/.qnh-node-compile-cache
if [ "$cache" = 1 ] && ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 qnhcache /newroot/tmp/.qnh-node-compile-cache; then
	info "cannot mount the compile cache share qnhcache: the cache stays in guest memory"
fi
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mkdir -p /newroot/run/netns /newroot/run/lock
# Nothing of the host's network state: the guest's own loopback only.
ip link set lo up
if [ ! -x "/newroot$node" ] || [ ! -d "/newroot$repo" ]; then
	info "$node or $repo is not there in the host's root"
	done_ 93
fi

# Runs a command in the host's root, in the environment the tests see: a clean one, as
# CI's (npm puts node_modules/.bin first), with Node's compile cache in guest memory.
inroot() {
	chroot /newroot /usr/bin/env -i \
		PATH="$repo/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
		HOME=/root LANG=C.UTF-8 TERM=dumb NO_COLOR=1 CI=true QNH_KERNEL_GUEST="$tag" \
		NODE_COMPILE_CACHE=/tmp/.qnh-node-compile-cache \
		/bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$repo" "$@"
}

phase() {
	n=$1
	files=$(echo "$2" | tr ',' ' ')
	echo "QNH-KGUEST-BEGIN: phase=$n"
	inroot "$node" "$repo/node_modules/.bin/tap" --reporter=tap --no-color --jobs="$jobs" --timeout="$timeout" $files 2>/rw/stderr-$n
	st=$?
	echo "QNH-KGUEST-END: phase=$n status=$st"
	# The test processes' stderr, kept apart from the TAP stream and marked line by line.
	sed "s/^/QNH-KGUEST-STDERR: phase=$n /" /rw/stderr-$n | tail -n 400
	return $st
}

# The helpers' modules, compiled once for every helper run (see kernel-guest-warm.ts).
start=$(cut -d. -f1 /proc/uptime)
# Node's options must be the helpers' own (KERNEL_GUEST_NODE_FLAGS in paths.ts), or V8
# rejects the cache; kernel-guest-warm.ts checks that they are.
inroot "$node" --liftoff-only "$repo/test/support/kernel-guest-warm.ts" 2>&1 | tail -n 5 | while IFS= read -r l; do info "$l"; done
info "warm-up took $(($(cut -d. -f1 /proc/uptime) - start)) s"

status=0
for n in 1 2 3 4; do
	eval "files=\$p$n with=\$p${n}_with"
	[ -n "$files" ] || continue
	for m in $(echo "$with" | tr ',' ' '); do
		out=$(insmod "/lib/modules/$m.ko" 2>&1) || info "insmod $m failed: $out"
	done
	start=$(cut -d. -f1 /proc/uptime)
	phase "$n" "$files" || status=1
	info "phase $n took $(($(cut -d. -f1 /proc/uptime) - start)) s"
	for m in $(echo "$with" | tr ',' '\n' | tac); do
		out=$(rmmod "$m" 2>&1) || { info "rmmod $m failed: $out"; status=1; }
	done
done
# Processes that died of a signal (the kernel logs where): under TCG, worth knowing.
dmesg | grep -E 'segfault at|traps:|general protection|Out of memory|oom-kill|Killed process' | tail -n 20 | while IFS= read -r l; do info "kernel: $l"; done
if [ -n "$(ls /newroot/run/netns 2>/dev/null)" ]; then
	info "network namespaces left behind in the guest: $(ls /newroot/run/netns | tr '\n' ' ')"
	status=1
fi
done_ $status
