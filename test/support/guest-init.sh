#!/bin/busybox sh
# /init of the qemu-net-helper end-to-end test guest (busybox initramfs built by
# test/support/guest.ts; this file's bytes are part of the image cache key).
#
# Kernel command line parameters read here (all required except qnh_count):
#   qnh_ip=ADDR/PREFIX   address given to eth0, e.g. 169.254.77.2/16
#   qnh_peer=ADDR        address pinged through eth0, e.g. 169.254.77.1
#   qnh_count=N          number of echo requests (default 3)
#   qnh_wait=S           seconds to wait for eth0 to appear (default 10; a hotplug test adds it later)
#   qnh_ip6=ADDR/PREFIX  an IPv6 address added to eth0 without duplicate address detection, e.g.
#                        fe80::77:2/64 (the test pings it from the peer: neighbour discovery
#                        for an address the host never joined)
#   qnh_hold=1           after the result, stay up: report when eth0 is removed (hot-unplug), power
#                        off only after 600 s (the test ends QEMU itself)
# Prints exactly one line "QNH-GUEST-RESULT: ping=ok" or "QNH-GUEST-RESULT: ping=fail"
# on the console (ttyS0), preceded by QNH-GUEST-INFO/QNH-GUEST-DIAG lines, then powers off.

/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

off() {
	sync
	poweroff -f
	# Only reached if the ACPI power-off did not work: make the kernel panic
	# (panic=-1 reboots at once, and QEMU's -no-reboot turns that into an exit).
	echo o >/proc/sysrq-trigger
	exit 1
}

result() {
	echo "QNH-GUEST-RESULT: ping=$1"
	if [ "$hold" = 1 ]; then
		i=0
		while [ -e /sys/class/net/eth0 ] && [ "$i" -lt 3000 ]; do
			usleep 100000
			i=$((i + 1))
		done
		[ ! -e /sys/class/net/eth0 ] && echo "QNH-GUEST-INFO: eth0 removed"
		sleep 600
	fi
	off
}

diag() {
	echo "QNH-GUEST-DIAG: --- ip link ---"
	ip link 2>&1
	echo "QNH-GUEST-DIAG: --- ip addr ---"
	ip addr 2>&1
	echo "QNH-GUEST-DIAG: --- ip neigh ---"
	ip neigh 2>&1
	echo "QNH-GUEST-DIAG: --- dmesg (virtio/net/eth) ---"
	dmesg 2>&1 | grep -i -E 'virtio|eth0|failover|unknown symbol|module|insmod' | tail -n 40
}

ip_addr=
peer=
count=3
wait_s=10
hold=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	qnh_ip=*) ip_addr=${arg#qnh_ip=} ;;
	qnh_peer=*) peer=${arg#qnh_peer=} ;;
	qnh_count=*) count=${arg#qnh_count=} ;;
	qnh_wait=*) wait_s=${arg#qnh_wait=} ;;
	qnh_hold=*) hold=${arg#qnh_hold=} ;;
	qnh_ip6=*) ip6_addr=${arg#qnh_ip6=} ;;
	esac
done
echo "QNH-GUEST-INFO: booted kernel=$(uname -r) ip=$ip_addr peer=$peer count=$count"
if [ -z "$ip_addr" ] || [ -z "$peer" ]; then
	echo "QNH-GUEST-INFO: missing qnh_ip= or qnh_peer= on the kernel command line"
	result fail
fi

# Modules, in dependency order, as listed by the image builder.
for m in $(cat /etc/qnh-modules); do
	out=$(insmod "/lib/modules/$m.ko" 2>&1) || echo "QNH-GUEST-INFO: insmod $m failed: $out"
done

# virtio_net probes asynchronously: wait (bounded, qnh_wait s) for eth0 to appear.
echo "QNH-GUEST-INFO: waiting for eth0"
i=0
while [ ! -e /sys/class/net/eth0 ] && [ "$i" -lt $((wait_s * 10)) ]; do
	usleep 100000
	i=$((i + 1))
done
if [ ! -e /sys/class/net/eth0 ]; then
	echo "QNH-GUEST-INFO: eth0 did not appear"
	diag
	result fail
fi

ip link set lo up
ip link set eth0 up
ip addr add "$ip_addr" dev eth0
if [ -n "$ip6_addr" ]; then
	# No duplicate address detection (busybox ip has no "nodad"): usable at once.
	echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad
	out=$(ip addr add "$ip6_addr" dev eth0 2>&1) || echo "QNH-GUEST-INFO: cannot add $ip6_addr: $out"
fi
echo "QNH-GUEST-INFO: eth0 mac=$(cat /sys/class/net/eth0/address) ip=$ip_addr${ip6_addr:+ ip6=$ip6_addr}"

if ping -c "$count" -W 2 -w $((count * 2 + 5)) "$peer"; then
	result ok
else
	diag
	result fail
fi
