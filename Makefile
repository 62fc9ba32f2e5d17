# Install msgfs: the program, its man pages, shell completions and the systemd user unit.
#
#   make install                      as root, into /usr/local (mount -t fuse.msgfs and fstab
#                                     lines need msgfs there or in /usr: mount(8) runs its
#                                     helpers without PATH)
#   make install PREFIX=~/.local      for one user
#   make uninstall [PREFIX=...]       remove exactly what install put there
#
# DESTDIR is put in front of every path (for packaging). MSGFS_BIN names an already built
# program and skips `cargo build --release`.

PREFIX ?= /usr/local
DESTDIR ?=
MSGFS_BIN ?= target/release/msgfs

BINDIR := $(DESTDIR)$(PREFIX)/bin
MANDIR := $(DESTDIR)$(PREFIX)/share/man
BASHDIR := $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR := $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR := $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
UNITDIR := $(DESTDIR)$(PREFIX)/lib/systemd/user

INSTALLED := $(BINDIR)/msgfs $(MANDIR)/man1/msgfs.1 $(MANDIR)/man5/msgfs.5 $(BASHDIR)/msgfs \
	$(ZSHDIR)/_msgfs $(FISHDIR)/msgfs.fish $(UNITDIR)/msgfs@.service

.PHONY: build install uninstall

build:
ifeq ($(MSGFS_BIN),target/release/msgfs)
	cargo build --release
endif

install: build
	install -d $(BINDIR) $(MANDIR)/man1 $(MANDIR)/man5 $(BASHDIR) $(ZSHDIR) $(FISHDIR) $(UNITDIR)
	install -m 0755 $(MSGFS_BIN) $(BINDIR)/msgfs
	install -m 0644 man/msgfs.1 $(MANDIR)/man1/msgfs.1
	install -m 0644 man/msgfs.5 $(MANDIR)/man5/msgfs.5
	$(MSGFS_BIN) completions bash > $(BASHDIR)/msgfs
	$(MSGFS_BIN) completions zsh > $(ZSHDIR)/_msgfs
	$(MSGFS_BIN) completions fish > $(FISHDIR)/msgfs.fish
	sed 's|@BINDIR@|$(PREFIX)/bin|g' dist/msgfs@.service.in > $(UNITDIR)/msgfs@.service
	chmod 0644 $(BASHDIR)/msgfs $(ZSHDIR)/_msgfs $(FISHDIR)/msgfs.fish $(UNITDIR)/msgfs@.service

uninstall:
	rm -f $(INSTALLED)
