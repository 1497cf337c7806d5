#!/usr/bin/python3
# The hostile co-tenant suite's agent: the small programs the suite runs as
# root or as its unprivileged test users (python3 from Debian, so the users
# need nothing of the checkout but this file, copied where they can read it).
# Every subcommand prints JSON lines on stdout and is bounded in time.
#
#   holder WORK SYSLOG_OUT   root, inside `unshare -m`: overlays /usr, /etc and /var
#                            (the package is installed there, privately), binds a
#                            syslog socket over /dev/log, copies every datagram to
#                            SYSLOG_OUT; "mark N" on stdin answers {"mark": N}
#                            once everything sent before it is in SYSLOG_OUT.
#                            Ends at EOF on stdin.
#   own [OPTS] -- ARGV       a stand-in for QEMU: runs ARGV with one end of a fresh
#                            socketpair as --socketpair=N (or --fd=N), reports the
#                            record and every fd received (fstat, TUNGETIFF).
#       --proto=socketpair|fd
#       --hold               keep the fds (and so ownership) until EOF on stdin
#       --kill-on-fd         SIGKILL the helper the moment an fd arrives
#       --stop-on-link       SIGSTOP the helper the moment a new macvtap appears in
#                            /sys/class/net; report it; the test then kills it
#       --zombie             do all that in a child that then exits unreaped
#       --handoff            give the fds to a child that keeps them (until SIGTERM, at most
#                            120 s), and exit: the owner is gone, its queue still in use
#       --connect=NAME       use a connection to abstract socket NAME instead of a
#                            socketpair (someone else's daemon at the other end)
#   listen NAME              a daemon: accepts on abstract socket NAME, reports each
#                            connection's bytes and fds; ends at EOF on stdin
#   tryopen PATH...          open(O_RDWR|O_NOFOLLOW) each path: errno, or fstat + TUNGETIFF
#   occupy FIRST COUNT       (inside `unshare -rn`) a veth and macvtaps with
#                            ifindex FIRST.., so /dev/tapFIRST.. are this user's
#                            devices; "refresh" on stdin re-makes the nodes that went
#                            away, "churn S" keeps the RTNL lock busy for S seconds;
#                            ends at EOF on stdin
#   steal SECONDS -- ARGV    runs this user's helper ARGV and tries to keep the device node
#                            it makes in /dev/.qemu-net-helper-* (a directory this user owns
#                            when the helper has file capabilities): stops and single-steps
#                            it (same uid) and hard-links the node to .../keep
#   blocked -- ARGV          (root) runs ARGV (which drops to the user itself) with stdout
#                            on a full pipe, so that its first write(2) blocks; reports
#                            the writer's uids, gids and capabilities from /proc while it
#                            waits there, then reads the pipe to the end: the exit
#                            status and the text
#   wait [ANY...]            block until EOF on stdin (the words only make its command line)

import ctypes
import errno
import fcntl
import json
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

TUNGETIFF = 0x800454D2
MAX_FDS = 253


def out(obj):
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def fd_info(fd):
    st = os.fstat(fd)
    info = {'fd': fd, 'chr': stat.S_ISCHR(st.st_mode), 'rdev': '%d:%d' % (os.major(st.st_rdev), os.minor(st.st_rdev))}
    try:
        buf = fcntl.ioctl(fd, TUNGETIFF, b'\0' * 40)
        info['tun_name'] = buf[:16].split(b'\0')[0].decode('ascii', 'replace')
        info['tun_flags'] = struct.unpack_from('<H', buf, 16)[0]
    except OSError as e:
        info['tun_error'] = errname(e)
    return info


def wait_stdin_eof(deadline_s=600):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        r, _, _ = select.select([sys.stdin], [], [], 1.0)
        if r and not os.read(sys.stdin.fileno(), 4096):
            return


def parse_record(text):
    rec = {}
    for line in text.split('\n'):
        if '=' in line:
            k, v = line.split('=', 1)
            rec[k] = v
    return rec


# ---------------------------------------------------------------- holder

def holder(work, syslog_out):
    def sh(*argv):
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    sh('mount', '-t', 'tmpfs', '-o', 'mode=755', 'tmpfs', work)
    for d in ('usr', 'etc', 'var'):
        up, wk = '%s/%s-upper' % (work, d), '%s/%s-work' % (work, d)
        os.mkdir(up, 0o755)
        os.mkdir(wk, 0o700)
        os.chmod(up, 0o755)
        sh('mount', '-t', 'overlay', 'overlay', '-o', 'lowerdir=/%s,upperdir=%s,workdir=%s' % (d, up, wk), '/' + d)
    path = work + '/log'
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(path)
    os.chmod(path, 0o666)
    sh('mount', '--bind', path, '/dev/log')
    sink = open(syslog_out, 'a', buffering=1)
    drain_lock = threading.Lock()

    def drain():
        # Everything queued now goes to the sink; called under drain_lock.
        while True:
            try:
                data = s.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            sink.write(json.dumps({'t': time.time(), 'log': data.decode('utf-8', 'replace')}) + '\n')

    def reader():
        # The queue holds only net.unix.max_dgram_qlen (10) datagrams: read them as they come.
        while True:
            r, _, _ = select.select([s], [], [], 1.0)
            if r:
                with drain_lock:
                    drain()

    threading.Thread(target=reader, daemon=True).start()
    out({'ready': os.getpid()})
    buf = b''
    while True:
        chunk = os.read(sys.stdin.fileno(), 4096)
        if not chunk:
            return
        buf += chunk
        while b'\n' in buf:
            line, buf = buf.split(b'\n', 1)
            words = line.decode().split()
            if len(words) == 2 and words[0] == 'mark':
                with drain_lock:
                    drain()
                out({'mark': words[1]})


# ---------------------------------------------------------------- own

def receive_all(sock, helper_pid, kill_on_fd, deadline):
    data = b''
    fds = []
    killed_at = None
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        try:
            msg, anc, flags, _ = sock.recvmsg(8192, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC)
        except ConnectionResetError:
            break
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                n = len(cdata) // 4
                fds.extend(struct.unpack('%di' % n, cdata[:n * 4]))
        if fds and kill_on_fd and killed_at is None:
            os.kill(helper_pid, signal.SIGKILL)
            killed_at = time.time()
        if not msg and not anc:
            break
        data += msg
    return data, fds, killed_at


def macvtaps_in_sysfs():
    """(name, ifindex) of every macvtap in this network namespace's sysfs (a reused name is a new link)."""
    found = set()
    try:
        names = os.listdir('/sys/class/net')
    except OSError:
        return found
    for n in names:
        try:
            if os.path.isdir('/sys/class/net/%s/macvtap' % n):
                with open('/sys/class/net/%s/ifindex' % n) as f:
                    found.add((n, f.read().strip()))
        except OSError:
            pass
    return found


def own(opts, argv):
    proto = opts.get('proto', 'socketpair')
    timeout = float(opts.get('timeout', '30'))
    if 'connect' in opts:
        mine = None
        theirs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs.connect('\0' + opts['connect'])
    else:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    before = macvtaps_in_sysfs() if 'stop-on-link' in opts else set()
    n = theirs.fileno()
    p = subprocess.Popen(argv + ['--%s=%d' % (proto, n)], pass_fds=[n], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    theirs.close()
    out({'spawned': p.pid})
    deadline = time.monotonic() + timeout
    stopped = None
    if 'stop-on-link' in opts:
        # Poll sysfs (this network namespace's, as ip netns exec mounts it) until a new macvtap exists.
        while time.monotonic() < deadline and p.poll() is None:
            new = macvtaps_in_sysfs() - before
            if new:
                os.kill(p.pid, signal.SIGSTOP)
                stopped = sorted(new)[0][0]
                out({'stopped': p.pid, 'link': stopped})
                break
    streams = {}

    def drain(name, f):
        streams[name] = f.read().decode('utf-8', 'replace')
    threads = [threading.Thread(target=drain, args=(k, f)) for k, f in (('stdout', p.stdout), ('stderr', p.stderr))]
    for th in threads:
        th.start()
    data, fds, killed_at = (b'', [], None)
    if mine is not None:
        data, fds, killed_at = receive_all(mine, p.pid, 'kill-on-fd' in opts, deadline)
    try:
        status = p.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        status = p.wait()
    for th in threads:
        th.join(5)
    text = data.decode('utf-8', 'replace')
    result = {
        'helper_pid': p.pid, 'owner_pid': os.getpid(),
        'status': status if status >= 0 else None, 'signal': -status if status < 0 else None,
        'killed_on_fd': killed_at is not None, 'stopped_link': stopped,
        'data': text, 'record': parse_record(text) if text.startswith('version=') else None,
        'fds': [fd_info(fd) for fd in fds],
        'stdout': streams.get('stdout', ''), 'stderr': streams.get('stderr', ''),
    }
    if 'handoff' in opts and fds:
        # As a manager does: the fds go on to another process of ours (here a child that keeps
        # them until EOF on stdin), and the owner, the process at the other end of the socket, exits.
        # (Not until EOF on stdin: Node closes a child's stdin when that child, this owner, exits.)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
        child = os.fork()
        if child == 0:
            signal.sigtimedwait([signal.SIGTERM], 120)
            os._exit(0)
        result['holder_pid'] = child
        out({'result': result})
        os._exit(0)
    out({'result': result})
    if 'hold' in opts:
        wait_stdin_eof()
    for fd in fds:
        os.close(fd)


def own_zombie(opts, argv):
    child = os.fork()
    if child == 0:
        try:
            own(opts, argv)
        finally:
            sys.stdout.flush()
            os._exit(0)
    out({'zombie': child})
    # Never reaped while we live: the owner stays a zombie.
    wait_stdin_eof()


# ---------------------------------------------------------------- listen

def listen(name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind('\0' + name)
    s.listen(16)
    out({'ready': os.getpid()})
    conns = 0
    while True:
        r, _, _ = select.select([s, sys.stdin], [], [], 600)
        if not r:
            return
        if sys.stdin in r:
            if not os.read(sys.stdin.fileno(), 4096):
                return
            continue
        c, _ = s.accept()
        conns += 1
        data, fds, _ = receive_all(c, 0, False, time.monotonic() + 30)
        info = [fd_info(fd) for fd in fds]
        for fd in fds:
            os.close(fd)
        c.close()
        out({'connection': conns, 'bytes': len(data), 'data': data.decode('utf-8', 'replace'), 'fds': info})


# ---------------------------------------------------------------- tryopen

def tryopen(paths):
    res = []
    for p in paths:
        try:
            fd = os.open(p, os.O_RDWR | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            res.append({'path': p, 'error': errname(e)})
            continue
        info = fd_info(fd)
        info['path'] = p
        os.close(fd)
        res.append(info)
    out({'opened': res})


# ---------------------------------------------------------------- occupy

def ip_binary():
    for p in ('/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'):
        if os.access(p, os.X_OK):
            return p
    raise SystemExit('no ip binary')


def occupy(first, count):
    ip = ip_binary()

    def run(*a):
        return subprocess.run([ip, *a], stdin=subprocess.DEVNULL, capture_output=True, text=True)

    def add(i):
        return run('link', 'add', 'link', 'qa0', 'name', 'qt%d' % i, 'index', str(i), 'type', 'macvtap').returncode == 0
    run('link', 'set', 'lo', 'up')
    r = run('link', 'add', 'qa0', 'type', 'veth', 'peer', 'name', 'qa1')
    if r.returncode != 0:
        out({'error': r.stderr.strip()})
        return
    made = [i for i in range(first, first + count) if add(i)]
    out({'ready': os.getpid(), 'indexes': made})
    # A line "refresh": a node that went away (its owner in another namespace was deleted, and the
    # kernel does not make ours then) is made again by re-adding our device.
    # A line "churn SECONDS": add and delete a veth pair here, over and over, for that long (at
    # most 30 s) or until "calm": deleting a link holds the kernel's RTNL lock for milliseconds,
    # and every open of a macvtap's queue takes that lock too. EOF ends.
    calm = threading.Event()

    def churn(seconds):
        end = time.monotonic() + min(seconds, 30.0)
        n = 0
        while time.monotonic() < end and not calm.is_set():
            run('link', 'add', 'qc0', 'type', 'veth', 'peer', 'name', 'qc1')
            run('link', 'del', 'qc0')
            n += 1
        out({'churned': n})
    churner = None
    buf = b''
    while True:
        chunk = os.read(sys.stdin.fileno(), 4096)
        if not chunk:
            calm.set()
            return
        buf += chunk
        while b'\n' in buf:
            line, buf = buf.split(b'\n', 1)
            words = line.decode().split()
            if words[:1] == ['churn']:
                if churner is None or not churner.is_alive():
                    calm.clear()
                    churner = threading.Thread(target=churn, args=(float(words[1]),), daemon=True)
                    churner.start()
                out({'churning': words[1]})
                continue
            if words[:1] == ['calm']:
                calm.set()
                if churner is not None:
                    churner.join(30)
                out({'calm': True})
                continue
            again = []
            for i in made:
                if not os.path.exists('/dev/tap%d' % i):
                    run('link', 'del', 'qt%d' % i)
                    if add(i):
                        again.append(i)
            out({'refreshed': line.decode().strip(), 'again': again})


# ---------------------------------------------------------------- steal

class InotifyEvent(ctypes.Structure):
    _fields_ = [('wd', ctypes.c_int), ('mask', ctypes.c_uint32), ('cookie', ctypes.c_uint32), ('len', ctypes.c_uint32)]


def proc_state(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(')') + 2]


def wait_stopped(pid, limit=100000):
    """Until pid is stopped (T) or gone; bounded."""
    for _ in range(limit):
        st = proc_state(pid)
        if st is None or st in 'TtZX':
            return st
    return proc_state(pid)


def steal(seconds, argv):
    """Runs the helper ARGV (this user's own run) and tries to keep the device node it makes
    in a directory this user owns (with file capabilities the helper runs as this user's uid,
    so its mkdtemp directory is this user's, and this user may signal it). This process
    spins on an inotify watch of /dev from another CPU; the moment such a directory appears it
    stops the helper (SIGSTOP lands at the helper's next return from a system call), then
    single-steps it (SIGCONT, SIGSTOP) until the node is in the directory, and hard-links it
    to .../keep while the helper is stopped."""
    libc = ctypes.CDLL(None, use_errno=True)
    IN_CREATE, IN_ISDIR, IN_NONBLOCK = 0x100, 0x40000000, 0o4000
    ino = libc.inotify_init1(IN_NONBLOCK)
    if ino < 0 or libc.inotify_add_watch(ino, b'/dev', IN_CREATE) < 0:
        out({'error': 'inotify: %s' % os.strerror(ctypes.get_errno())})
        return
    me = os.getuid()
    cpus = sorted(os.sched_getaffinity(0))

    def slow_and_pinned():
        # Our own process, so ours to renice and pin (exec keeps both, setuid or not).
        os.nice(19)
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[0]})
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus[1:]))
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=slow_and_pinned)
    out({'spawned': p.pid})
    end = time.monotonic() + seconds
    seen, kept = [], []
    while not kept and time.monotonic() < end and p.poll() is None:
        try:
            buf = os.read(ino, 65536)
        except BlockingIOError:
            continue
        off = 0
        while off < len(buf) and not kept:
            ev = InotifyEvent.from_buffer_copy(buf, off)
            name = buf[off + 16: off + 16 + ev.len].split(b'\0')[0].decode('ascii', 'replace')
            off += 16 + ev.len
            if not (ev.mask & IN_ISDIR and name.startswith('.qemu-net-helper-')):
                continue
            d = '/dev/' + name
            try:
                os.kill(p.pid, signal.SIGSTOP)
            except OSError:
                break
            entry = {'dir': d, 'steps': 0}
            seen.append(entry)
            try:
                for entry['steps'] in range(1, 5001):
                    if wait_stopped(p.pid) in (None, 'Z', 'X'):
                        break
                    if entry['steps'] == 1:
                        try:
                            entry['uid'] = os.lstat(d).st_uid
                        except OSError:
                            entry['uid'] = None
                    if os.path.lexists(d + '/tap'):
                        try:
                            os.link(d + '/tap', d + '/keep')
                            st = os.lstat(d + '/keep')
                            kept.append({'path': d + '/keep', 'rdev': '%d:%d' % (os.major(st.st_rdev), os.minor(st.st_rdev)),
                                         'uid': st.st_uid, 'mode': st.st_mode & 0o7777})
                        except OSError as e:
                            entry['link_error'] = errname(e)
                        break
                    if not os.path.isdir(d):
                        break
                    os.kill(p.pid, signal.SIGCONT)
                    os.kill(p.pid, signal.SIGSTOP)
            finally:
                os.kill(p.pid, signal.SIGCONT)
    try:
        status = p.wait(timeout=max(1.0, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        status = p.wait()
    out({'steal': {'status': status if status >= 0 else None, 'signal': -status if status < 0 else None,
                   'stderr': p.stderr.read().decode('utf-8', 'replace'), 'seen': seen, 'kept': kept}})


# ---------------------------------------------------------------- blocked

def proc_status(pid):
    fields = {}
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                k, _, v = line.partition(':')
                if k in ('Uid', 'Gid', 'CapEff', 'CapPrm'):
                    fields[k] = v.split()
    except OSError:
        return None
    return fields


def in_write_to(pid, fd):
    """Whether pid is blocked in write(fd, ...) now (/proc/PID/syscall: root may read it of anyone)."""
    try:
        with open('/proc/%d/syscall' % pid) as f:
            words = f.read().split()
    except OSError:
        return False
    return len(words) > 1 and words[0] == '1' and int(words[1], 16) == fd


def blocked(argv):
    page = 4096
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, page)
    os.write(w, b'#' * fcntl.fcntl(w, fcntl.F_GETPIPE_SZ))
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.PIPE, close_fds=True)
    os.close(w)
    seen = None
    end = time.monotonic() + 20
    while time.monotonic() < end and p.poll() is None:
        if in_write_to(p.pid, 1):
            seen = proc_status(p.pid)
            break
        time.sleep(0.002)
    text = b''
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        text += chunk
    try:
        status = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        status = p.wait()
    out({'blocked': {'status': status if status >= 0 else None, 'signal': -status if status < 0 else None, 'while_writing': seen,
                     'stdout': text[page:].decode('utf-8', 'replace'), 'stderr': p.stderr.read().decode('utf-8', 'replace')}})


def main():
    args = sys.argv[1:]
    cmd = args.pop(0)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if cmd == 'holder':
        holder(args[0], args[1])
    elif cmd == 'own':
        opts = {}
        while args and args[0] != '--':
            a = args.pop(0)
            k, _, v = a[2:].partition('=')
            opts[k] = v
        argv = args[1:]
        (own_zombie if 'zombie' in opts else own)(opts, argv)
    elif cmd == 'listen':
        listen(args[0])
    elif cmd == 'tryopen':
        tryopen(args)
    elif cmd == 'occupy':
        occupy(int(args[0]), int(args[1]))
    elif cmd == 'steal':
        steal(float(args[0]), args[2:] if args[1:2] == ['--'] else args[1:])
    elif cmd == 'blocked':
        blocked(args[1:] if args[:1] == ['--'] else args)
    elif cmd == 'wait':
        out({'ready': os.getpid()})
        wait_stdin_eof()
    else:
        raise SystemExit('unknown subcommand ' + cmd)


if __name__ == '__main__':
    main()
