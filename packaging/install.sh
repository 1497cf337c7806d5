#!/bin/sh
# Installs what `npm run package` built, for distributions other than Debian
# (Debian: npm run deb). POSIX sh; run from anywhere in a checkout.
#
#   npm ci && npm run package -- --prefix=/usr/local
#   sudo PREFIX=/usr/local sh packaging/install.sh
#
# Variables:
#   PREFIX      install prefix; must be the one the executables were built for,
#               because koffi.node's path is compiled into them (default: the
#               build's prefix, from dist/sea/build.json)
#   DESTDIR     staging root for packagers; with DESTDIR set, no capabilities
#               are set (give them in the package: RPM's %caps, a postinst)
#   SYSCONFDIR  where qemu/net-helper.conf goes (default /etc; the helpers
#               read /etc/qemu/net-helper.conf)
#   SYSTEMDUNITDIR  where the stale-link timer and its service go (default
#               PREFIX/lib/systemd/system); they are installed, never enabled
#   LICENSEDIR  where LICENSE and THIRD-PARTY-NOTICES go (default: the doc
#               directory, PREFIX/share/doc/qemu-net-helper)
#   SETCAP      no: do not set capabilities even when installing for real
#   DIST        where `npm run package` wrote its output (default: dist/ of the checkout)
# Options:
#   --uninstall remove what this script installs (the config file stays
#               unless it is unchanged)
set -eu

die() { echo "install.sh: $1" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
dist="${DIST:-$repo/dist}"
info="$dist/sea/build.json"
caps='cap_chown,cap_dac_override,cap_net_admin=ep'

[ -r "$info" ] || die "$info is missing; build first with 'npm run package -- --prefix=${PREFIX:-/usr}'"

# dist/sea/build.json is written by packaging/build.ts: one "key": value per line.
json_string() { sed -n "s/^  \"$1\": \"\\([^\"]*\\)\",\{0,1\}\$/\\1/p" "$info"; }
json_list() { sed -n "/^  \"$1\": \\[/,/^  \\]/p" "$info" | sed -n 's/^    "\([^"]*\)",\{0,1\}$/\1/p'; }
json_number() { sed -n "s/^  \"$1\": \([0-9][0-9]*\),\{0,1\}\$/\\1/p" "$info"; }
built_prefix=$(json_string prefix)
libdir=$(json_string libdir)
programs=$(json_list programs)
epoch=$(json_number sourceDateEpoch)
[ -n "$built_prefix" ] && [ -n "$libdir" ] && [ -n "$programs" ] && [ -n "$epoch" ] || die "cannot read $info; rebuild with 'npm run package'"

PREFIX=${PREFIX:-$built_prefix}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=${SYSCONFDIR:-/etc}
SETCAP=${SETCAP:-yes}
[ "$PREFIX" = "$built_prefix" ] || die "the executables were built for prefix $built_prefix, not $PREFIX (koffi.node's path is compiled in); rebuild with 'npm run package -- --prefix=$PREFIX'"

libexecdir="$PREFIX/libexec"
bindir="$PREFIX/bin"
# The privileged helpers go to libexec with capabilities; other programs (qemu-net-launch) to bin.
target() { case "$1" in qemu-net-helper-*) echo "$libexecdir/$1" ;; *) echo "$bindir/$1" ;; esac; }
helpers() { for p in $programs; do case "$p" in qemu-net-helper-*) echo "$p" ;; esac; done; }
mandir="$PREFIX/share/man"
docdir="$PREFIX/share/doc/qemu-net-helper"
conf="$SYSCONFDIR/qemu/net-helper.conf"
unitdir=${SYSTEMDUNITDIR:-$PREFIX/lib/systemd/system}
licensedir=${LICENSEDIR:-$docdir}
units="qemu-net-helper-gc.service qemu-net-helper-gc.timer"
# The man pages' .TH date: the build's SOURCE_DATE_EPOCH (GNU date, else BSD date).
mandate=$(date -u -d "@$epoch" +%Y-%m-%d 2>/dev/null || date -u -r "$epoch" +%Y-%m-%d)

manpages() { for f in "$repo"/docs/man/*.[1-8]; do [ -e "$f" ] && echo "$f"; done; }

if [ "${1:-}" = --uninstall ]; then
    for p in $programs; do rm -f "$DESTDIR$(target "$p")"; done
    rm -f "$DESTDIR$libdir/koffi.node"
    rmdir "$DESTDIR$libdir" 2>/dev/null || true
    for f in $(manpages); do s=${f##*.}; rm -f "$DESTDIR$mandir/man$s/$(basename "$f")"; done
    rm -f "$DESTDIR$docdir/protocol.md" "$DESTDIR$docdir/security.md"
    rm -f "$DESTDIR$licensedir/LICENSE" "$DESTDIR$licensedir/THIRD-PARTY-NOTICES"
    rmdir "$DESTDIR$licensedir" 2>/dev/null || true
    rmdir "$DESTDIR$docdir" 2>/dev/null || true
    for u in $units; do rm -f "$DESTDIR$unitdir/$u"; done
    if [ -f "$DESTDIR$conf" ] && cmp -s "$DESTDIR$conf" "$here/net-helper.conf"; then
        rm -f "$DESTDIR$conf"
        rmdir "$DESTDIR$SYSCONFDIR/qemu" 2>/dev/null || true
    elif [ -f "$DESTDIR$conf" ]; then
        echo "install.sh: keeping $DESTDIR$conf: it was changed" >&2
    fi
    exit 0
fi
[ $# -eq 0 ] || die "unknown argument $1; usage: [PREFIX=...] [DESTDIR=...] sh packaging/install.sh [--uninstall]"

[ -n "$DESTDIR" ] || [ "$(id -u)" = 0 ] || die "installing into $PREFIX needs root; run it with sudo, or set DESTDIR to stage the files"
for p in $programs; do [ -f "$dist/bin/$p" ] || die "$dist/bin/$p is missing; rebuild with 'npm run package -- --prefix=$PREFIX'"; done
[ -f "$dist/sea/THIRD-PARTY-NOTICES" ] || die "$dist/sea/THIRD-PARTY-NOTICES is missing; rebuild with 'npm run package -- --prefix=$PREFIX'"

install -d -m 0755 "$DESTDIR$libexecdir" "$DESTDIR$bindir" "$DESTDIR$libdir" "$DESTDIR$docdir" "$DESTDIR$licensedir" "$DESTDIR$unitdir" "$DESTDIR$SYSCONFDIR/qemu"
# The helpers are one file under several names (hard links in dist/bin):
# installed once and linked, as the Debian package does.
installed=""
for p in $programs; do
    same=""
    for q in $installed; do
        if [ "$dist/bin/$p" -ef "$dist/bin/$q" ] && [ "$(dirname "$(target "$p")")" = "$(dirname "$(target "$q")")" ]; then same=$q; break; fi
    done
    if [ -n "$same" ]; then
        ln -f "$DESTDIR$(target "$same")" "$DESTDIR$(target "$p")"
    else
        install -m 0755 "$dist/bin/$p" "$DESTDIR$(target "$p")"
    fi
    installed="$installed $p"
done
install -m 0644 "$dist/sea/koffi.node" "$DESTDIR$libdir/koffi.node"
for f in $(manpages); do
    s=${f##*.}
    install -d -m 0755 "$DESTDIR$mandir/man$s"
    # Dated like the Debian package's (packaging/build.ts, datedManPage).
    sed "s/^\(\.TH  *[^ ]*  *[^ ]*  *\)\"[^\"]*\"/\1\"$mandate\"/" "$f" > "$DESTDIR$mandir/man$s/$(basename "$f")"
    chmod 0644 "$DESTDIR$mandir/man$s/$(basename "$f")"
done
install -m 0644 "$repo/docs/protocol.md" "$repo/docs/security.md" "$DESTDIR$docdir/"
install -m 0644 "$repo/LICENSE" "$dist/sea/THIRD-PARTY-NOTICES" "$DESTDIR$licensedir/"
# The timer runs the installed helper: the unit names it by its path.
for u in $units; do
    sed "s,/usr/libexec/,$libexecdir/,g" "$here/systemd/$u" > "$DESTDIR$unitdir/$u"
    chmod 0644 "$DESTDIR$unitdir/$u"
done
if [ -e "$DESTDIR$conf" ]; then
    echo "install.sh: keeping the existing $DESTDIR$conf" >&2
else
    install -m 0644 "$here/net-helper.conf" "$DESTDIR$conf"
fi

if [ -n "$DESTDIR" ]; then
    echo "install.sh: staged in $DESTDIR; the package must give $libexecdir/qemu-net-helper-* the capabilities $caps (see docs/security.md)"
    exit 0
fi

# The helpers refuse koffi.node unless it and every directory above it are
# root's and writable by no one else (lib/koffi-loader.ts): say so now.
d="$libdir"
while [ -n "$d" ]; do
    if [ -n "$(find "$d" -maxdepth 0 \( ! -user root -o -perm -g+w -o -perm -o+w \) -print)" ] || [ -L "$d" ]; then
        echo "install.sh: warning: $d is a symbolic link, not root's, or writable by group or others: the helpers will refuse to load $libdir/koffi.node; fix its owner and mode, or rebuild with --libdir under /usr/lib" >&2
    fi
    [ "$d" = / ] && break
    d=$(dirname "$d")
done

if [ "$SETCAP" = no ]; then
    echo "install.sh: installed without capabilities (SETCAP=no): only root can use the helpers"
    exit 0
fi
for p in $(helpers); do
    if command -v setcap >/dev/null 2>&1 && setcap "$caps" "$libexecdir/$p"; then
        chmod 0755 "$libexecdir/$p"
    else
        echo "install.sh: cannot set file capabilities on $libexecdir/$p: installing it setuid root instead" >&2
        chmod 4755 "$libexecdir/$p"
    fi
done
echo "install.sh: installed $(helpers | wc -l) helpers in $libexecdir, the other programs in $bindir, koffi.node in $libdir"
echo "install.sh: the stale-link timer is in $unitdir; enable it with 'systemctl daemon-reload && systemctl enable --now qemu-net-helper-gc.timer'"
