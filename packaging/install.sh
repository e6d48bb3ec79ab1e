#!/bin/sh
# Installs qpool into a staging root: the one list of what the packages ship, used by
# packaging/build-deb (Debian) and packaging/rpm/qpool.spec (RPM).
#
#   install.sh DESTDIR BINDIR GENDIR
#
# BINDIR holds the built `qpool` and `qpoold`; GENDIR is what `qpool-manpages` wrote
# (man/ and completions/). Distribution paths that differ come from the environment:
#   UNITDIR  systemd units   (default /lib/systemd/system, Debian 12; RPM: %{_unitdir})
#   ZSHDIR   zsh completions (default /usr/share/zsh/vendor-completions; RPM:
#            /usr/share/zsh/site-functions)
#   DOCDIR   documentation   (default /usr/share/doc/qpool)
# Directories made at install time (/etc/qpool/storage, /var/lib/qpool/images) are not
# shipped: the maintainer scripts create them.
set -eu
[ $# -eq 3 ] || { echo "usage: $0 DESTDIR BINDIR GENDIR" >&2; exit 1; }
dest=$1 bins=$2 gen=$3
top=$(cd "$(dirname "$0")/.." && pwd)
unitdir=${UNITDIR:-/lib/systemd/system}
zshdir=${ZSHDIR:-/usr/share/zsh/vendor-completions}
docdir=${DOCDIR:-/usr/share/doc/qpool}

install -D -m 0755 "$bins/qpool" "$dest/usr/bin/qpool"
install -D -m 0755 "$bins/qpoold" "$dest/usr/sbin/qpoold"
for unit in qpoold.service qpoold.socket qpoold-ro.socket qpoold-virtstoraged.socket \
    qpoold-virtstoraged-ro.socket; do
  install -D -m 0644 "$top/systemd/$unit" "$dest$unitdir/$unit"
done
install -D -m 0644 "$top/packaging/qpoold.conf" "$dest/etc/qpool/qpoold.conf"
for page in "$gen/man/qpool.1" "$gen/man/qpoold.8" "$top/packaging/man/qpoold.conf.5"; do
  section=${page##*.}
  install -d -m 0755 "$dest/usr/share/man/man$section"
  gzip -9nc "$page" > "$dest/usr/share/man/man$section/$(basename "$page").gz"
  chmod 0644 "$dest/usr/share/man/man$section/$(basename "$page").gz"
done
for name in qpool qpoold; do
  install -D -m 0644 "$gen/completions/$name" "$dest/usr/share/bash-completion/completions/$name"
  install -D -m 0644 "$gen/completions/_$name" "$dest$zshdir/_$name"
done
install -d -m 0755 "$dest/usr/share/qpool/xml-schemas" "$dest$docdir/examples"
install -m 0644 "$top"/xml-schemas/* "$dest/usr/share/qpool/xml-schemas/"
install -m 0644 "$top"/examples/* "$dest$docdir/examples/"
install -m 0644 "$top/README.md" "$dest$docdir/README.md"
# Drop-in examples for the units (pool targets outside /var/lib/qpool), where systemd/ has any.
for example in "$top"/systemd/*.example; do
  [ -e "$example" ] || continue
  install -m 0644 "$example" "$dest$docdir/$(basename "$example")"
done
