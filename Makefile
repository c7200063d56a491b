# Install nsrun with its man page and shell completions, or build a Debian package.
#
#   make install                          # into /usr/local (PREFIX), as root
#   make install PREFIX=/usr DESTDIR=/tmp/stage
#   make deb                              # target/nsrun_VERSION_amd64.deb
#   make deb SETCAP=1                     # the package sets nsrun's file capabilities
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

deb: $(BIN)
	rm -rf target/deb
	$(MAKE) install PREFIX=/usr DESTDIR=target/deb BIN=$(BIN)
	mkdir -p target/deb/DEBIAN
	printf 'Package: nsrun\nVersion: %s\nArchitecture: amd64\nMaintainer: nsrun developers\nSection: net\nPriority: optional\nDescription: run a command in its own network namespace, with NAT through the host\n nsrun gives a command its own network stack, a private resolv.conf and a firewall\n that keeps it off the host, other sandboxes and cloud metadata services.\n' '$(VERSION)' >target/deb/DEBIAN/control
	if [ "$(SETCAP)" = 1 ]; then \
	  printf '#!/bin/sh\nset -e\nsetcap cap_net_admin,cap_sys_admin,cap_setpcap+ep /usr/bin/nsrun || true\n' >target/deb/DEBIAN/postinst; \
	  chmod 755 target/deb/DEBIAN/postinst; \
	fi
	dpkg-deb --root-owner-group --build target/deb target/nsrun_$(VERSION)_amd64.deb
