// Every kernel and libc constant the project uses, in one place, with the
// header it comes from. Values are for Linux x86_64 (the only target); each is
// checked against the running kernel by the tests that exercise it.

// <linux/netlink.h>
export const AF_NETLINK = 16;
export const NETLINK_ROUTE = 0;
export const SOL_NETLINK = 270;
export const NETLINK_EXT_ACK = 11;
export const NETLINK_GET_STRICT_CHK = 12;

export const NLMSG_HDRLEN = 16;
export const NLMSG_ALIGNTO = 4;
export const NLA_HDRLEN = 4;
export const NLA_ALIGNTO = 4;
export const NLA_F_NESTED = 1 << 15;
export const NLA_F_NET_BYTEORDER = 1 << 14;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;
export const NLMSG_MIN_TYPE = 0x10; // types below are control messages
export const NLMSGERR_LEN = 20; // struct nlmsgerr: int error + the echoed nlmsghdr

export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP_FILTERED = 0x20; // on dump replies: the kernel applied the request's filter
// Modifiers to GET requests
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
// Modifiers to NEW requests
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
// Flags on NLMSG_ERROR acknowledgements
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;

// enum nlmsgerr_attrs
export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;

// <linux/rtnetlink.h>
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const IFADDRMSG_LEN = 8; // sizeof(struct ifaddrmsg)
export const IFA_LOCAL = 2; // <linux/if_addr.h>
export const IFINFOMSG_LEN = 16;

// <linux/if_link.h>
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_GSO_MAX_SIZE = 41;
export const IFLA_DEVLINK_PORT = 62;
export const IFLA_LINK = 5;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_IFALIAS = 20;
export const IFALIASZ = 256; // including the terminating NUL
export const IFLA_NET_NS_PID = 19;
export const IFLA_EXT_MASK = 29;
export const IFLA_GROUP = 27;
export const IFLA_MASTER = 10;
export const IFLA_PROP_LIST = 52;
export const IFLA_ALT_IFNAME = 53;
/** Per address family link attributes; AF_INET6's carry IFLA_INET6_CONF, the device's ipv6 sysctls as an s32 array. */
export const IFLA_AF_SPEC = 26;
export const AF_INET6 = 10;
export const IFLA_INET6_CONF = 2;
/** <linux/ipv6.h> enum: the index of disable_ipv6 in IFLA_INET6_CONF. */
export const DEVCONF_DISABLE_IPV6 = 26;
/** Where a device's ipv6 sysctls are, in the network namespace of the process that opens them. */
export const IPV6_CONF_DIR = '/proc/sys/net/ipv6/conf';
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const IFLA_MACVLAN_MODE = 1;
export const IFLA_MACVLAN_FLAGS = 2;
/** <linux/if_link.h> IFLA_VLAN_*: the 802.1Q id of a "vlan" link (IFLA_INFO_DATA). */
export const IFLA_VLAN_ID = 1;
export const IFLA_VLAN_PROTOCOL = 5;
/** The VLAN protocol of an 802.1Q VLAN (802.1ad, 0x88a8, is another network with the same ids). */
export const ETH_P_8021Q = 0x8100;
/** The link's peer/lower device is in another network namespace (its IFLA_LINK is that namespace's ifindex). */
export const IFLA_LINK_NETNSID = 37;
/** 802.1Q ids a VLAN may have (0 and 4095 are reserved). */
export const MIN_VLAN_ID = 1;
export const MAX_VLAN_ID = 4094;

// enum macvlan_mode
export const MACVLAN_MODE_PRIVATE = 1;
export const MACVLAN_MODE_VEPA = 2;
export const MACVLAN_MODE_BRIDGE = 4;
export const MACVLAN_MODE_PASSTHRU = 8;
export const MACVLAN_MODE_SOURCE = 16;

// <net/if.h>
export const IFNAMSIZ = 16; // including the terminating NUL: names are at most 15 bytes
export const IFF_UP = 0x1;
export const IFF_BROADCAST = 0x2;
export const IFF_ALLMULTI = 0x200;
export const IFF_MULTICAST = 0x1000;
export const ARPHRD_ETHER = 1;
export const AF_UNSPEC = 0;

// <linux/if_tun.h>
export const TUNSETIFF = 0x400454ca;
export const TUNGETFEATURES = 0x800454cf;
export const TUNGETIFF = 0x800454d2;
export const TUNGETVNETHDRSZ = 0x800454d7;
export const TUNSETVNETHDRSZ = 0x400454d8;
export const IFF_TUN = 0x0001;
export const IFF_TAP = 0x0002;
export const IFF_NO_PI = 0x1000;
export const IFF_ONE_QUEUE = 0x2000;
export const IFF_VNET_HDR = 0x4000;
export const IFF_MULTI_QUEUE = 0x0100;
export const TUNSETOFFLOAD = 0x400454d0; // argument is the flags value itself, not a pointer
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_UFO = 0x10;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;
export const MAX_TAP_QUEUES = 256; // MAX_TAP_QUEUES in drivers/net/tap.c
export const IFREQ_SIZE = 40; // struct ifreq on x86_64
export const VIRTIO_NET_HDR_LEN = 10; // struct virtio_net_hdr, the macvtap default vnet_hdr_sz

// <linux/vhost.h>, <linux/miscdevice.h>
export const VHOST_GET_FEATURES = 0x8008af00; // _IOR(VHOST_VIRTIO, 0x00, __u64)
export const MISC_MAJOR = 10;
export const VHOST_NET_MINOR = 238;

// <linux/proc_ns.h>: the initial network namespace's fixed nsfs inode (kernels
// that give initial namespaces fixed inodes; dynamic ones start at 0xF0000000,
// so no other namespace can have it).
export const PROC_NET_INIT_INO = 0xeffffff9n;
export const PROC_PID_INIT_INO = 0xeffffffc; // the initial PID namespace's fixed nsfs inode (include/linux/proc_ns.h)

// <poll.h>
export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLRDHUP = 0x2000;

// <signal.h>
export const SIGPIPE = 13;
export const SIGUSR1 = 10;
export const SIGXFSZ = 25;
export const SIG_DFL = 0;
export const SIG_IGN = 1;
export const SIG_ERR = -1;
export const SIG_SETMASK = 2;
export const SIGSET_BYTES = 128; // glibc's sigset_t

// <errno.h> values that code tests by number
export const ERANGE = 34;

// <sys/auxv.h>, <sys/prctl.h>, <linux/capability.h>
export const AT_SECURE = 23;
export const PR_SET_NO_NEW_PRIVS = 38;
export const PR_CAP_AMBIENT = 47;
export const PR_CAP_AMBIENT_CLEAR_ALL = 4;
export const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
export const PR_SET_KEEPCAPS = 8;
export const CAP_CHOWN = 0;
export const CAP_DAC_OVERRIDE = 1;
export const CAP_NET_ADMIN = 12;

// <linux/close_range.h>
export const CLOSE_RANGE_CLOEXEC = 1 << 2;

// <sys/socket.h>
export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_SEQPACKET = 5;
export const SOCK_CLOEXEC = 0o2000000;
export const SOCK_NONBLOCK = 0o4000;
export const SOL_SOCKET = 1;
export const SO_TYPE = 3;
export const SO_RCVBUF = 8;
export const SO_PEERCRED = 17;
export const SO_ACCEPTCONN = 30;
export const SO_DOMAIN = 39;
export const SO_RCVTIMEO = 20; // struct timeval with 64-bit time_t
export const SCM_RIGHTS = 1;
export const MSG_CTRUNC = 0x08;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_CMSG_CLOEXEC = 0x40000000;
export const CMSG_HDR_LEN = 16; // struct cmsghdr: size_t cmsg_len; int level; int type
export const SCM_MAX_FD = 253; // the kernel's limit on fds in one SCM_RIGHTS message

// <fcntl.h>, <sys/stat.h>
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_NONBLOCK = 0o4000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_CLOEXEC = 0o2000000;
export const F_GETFD = 1;
export const F_SETFD = 2;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const FD_CLOEXEC = 1;
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_ISVTX = 0o1000;
export const S_IWGRP = 0o020;
export const S_IWOTH = 0o002;

// <linux/kdev_t.h> (the glibc encoding of dev_t, as in gnu_dev_makedev)
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}
