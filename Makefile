# Install nsrun with its man page and shell completions, or build a Debian package.
#
#   make install                          # into /usr/local (PREFIX), as root
#   make install PREFIX=/usr DESTDIR=/tmp/stage
#   make deb                              # target/nsrun_VERSION-1_amd64.deb
#   make deb SETCAP=1                     # target/nsrun-setcap_VERSION-1_amd64.deb: the
#                                         # package sets nsrun's file capabilities
#
# BIN picks the binary to install (default: the static release build, built if needed).

PREFIX ?= /usr/local
DESTDIR ?=
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
BIN ?= target/x86_64-unknown-linux-gnu/release/nsrun
SETCAP ?= 0

.PHONY: install deb

$(BIN):
	cargo build --release

install: $(BIN)
	install -D -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/nsrun
	install -D -m 644 man/nsrun.1 $(DESTDIR)$(PREFIX)/share/man/man1/nsrun.1
	install -D -m 644 completions/nsrun.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/nsrun
	install -D -m 644 completions/_nsrun $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_nsrun
	install -D -m 644 completions/nsrun.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/nsrun.fish

MAINTAINER := nsrun developers <nsrun@users.noreply.invalid>
DEB_VERSION := $(VERSION)-1
DEB_NAME := $(if $(filter 1,$(SETCAP)),nsrun-setcap,nsrun)_$(DEB_VERSION)_amd64.deb

define DEB_COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: nsrun
Upstream-Contact: $(MAINTAINER)

Files: *
Copyright: 2026 nsrun developers
License: MIT or Apache-2.0

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy of
 this software and associated documentation files (the "Software"), to deal in
 the Software without restriction, including without limitation the rights to
 use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of
 the Software, and to permit persons to whom the Software is furnished to do so,
 subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all
 copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS
 FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
 COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN
 AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
 WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
endef

define DEB_CHANGELOG
nsrun ($(DEB_VERSION)) unstable; urgency=medium

  * Built from nsrun's source tree with make deb.

 -- $(MAINTAINER)  $(shell date -R -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s))
endef

define DEB_CONTROL
Package: nsrun
Version: $(DEB_VERSION)
Architecture: amd64
Maintainer: $(MAINTAINER)
Installed-Size: @SIZE@
$(if $(filter 1,$(SETCAP)),Depends: libcap2-bin
)Section: net
Priority: optional
Description: run a command in its own network namespace, with NAT through the host
 nsrun gives a command its own network stack, a private resolv.conf and a
 firewall that keeps it off the host, other sandboxes and cloud metadata
 services.
endef

define DEB_POSTINST
#!/bin/sh
set -e
if [ "$$1" = configure ]; then
    setcap cap_net_admin,cap_sys_admin,cap_setpcap+ep "$$DPKG_ROOT/usr/bin/nsrun"
fi
endef

export DEB_COPYRIGHT DEB_CHANGELOG DEB_CONTROL DEB_POSTINST

deb: $(BIN)
	rm -rf target/deb
	$(MAKE) install PREFIX=/usr DESTDIR=target/deb BIN=$(BIN)
	strip --strip-unneeded target/deb/usr/bin/nsrun
	gzip -9n target/deb/usr/share/man/man1/nsrun.1
	install -d target/deb/usr/share/doc/nsrun target/deb/DEBIAN
	printf '%s\n' "$$DEB_COPYRIGHT" >target/deb/usr/share/doc/nsrun/copyright
	printf '%s\n' "$$DEB_CHANGELOG" | gzip -9n >target/deb/usr/share/doc/nsrun/changelog.Debian.gz
	chmod 644 target/deb/usr/share/doc/nsrun/*
	printf '%s\n' "$$DEB_CONTROL" | sed "s/@SIZE@/$$(du -sk --exclude=DEBIAN target/deb | cut -f1)/" >target/deb/DEBIAN/control
	if [ "$(SETCAP)" = 1 ]; then \
	  printf '%s\n' "$$DEB_POSTINST" >target/deb/DEBIAN/postinst; \
	  chmod 755 target/deb/DEBIAN/postinst; \
	fi
	dpkg-deb --root-owner-group -Zxz --build target/deb target/$(DEB_NAME)
