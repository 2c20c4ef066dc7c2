#!/usr/bin/env bash
# update-server-script.sh [PACKAGE...]: set up, or upgrade, a gitreceive node.
#
# Runs as root on the node. SERVERROOT names the extracted serverroot/, whose
# files belong at the same paths under /. PACKAGEs are Debian packages wanted
# on top of the stack (services pass theirs).
#
# A rerun is the upgrade, and on a node that is already set up it changes
# nothing: no file rewritten, no service restarted or reloaded. Each step says
# in one short line what it did; the operator sees them prefixed by the node's
# name.
set -euo pipefail
umask 022
export LC_ALL=C
# Reached over ssh or from a minimal environment: make sure sbin is there.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

# Keep in sync with serverfiles.Stack (a test compares them).
STACK=(nginx uwsgi-core uwsgi-emperor uwsgi-plugin-python3 uwsgi-plugin-php python3)

APP_HOME=/srv/gitreceive
APPS_DIR=/srv/gitreceive/apps
EMPEROR_INI=/etc/gitreceive/emperor.ini
EMPEROR_PIDFILE=/run/gitreceive/emperor.pid
EMPEROR_LOG=/var/log/gitreceive/emperor.log
NGINX_PIDFILE=/run/nginx.pid # set by Debian's nginx.conf
DEFAULT_SITE=/etc/nginx/sites-enabled/default
# Set while nginx's config on disk is newer than what nginx runs, so that a
# run that failed before reloading (nginx -t refused someone's broken file)
# leaves the reload to the next run. In /run: a reboot starts nginx afresh.
NGINX_RELOAD_PENDING=/run/gitreceive/nginx-reload-pending
# What this script installed last time, so an upgrade can remove files that
# a newer serverroot no longer has.
INSTALLED_LIST=/var/lib/gitreceive/server-files.list

changes=0
nginx_changed=0
emperor_changed=0
unit_changed=0
temp_files=()
# Keeps the script's exit status whatever the clean-up does.
cleanup() {
	local status=$?
	((${#temp_files[@]} == 0)) || rm -f -- "${temp_files[@]}"
	exit "$status"
}
trap cleanup EXIT

say() { printf '%s\n' "$*"; }
changed() {
	say "$*"
	changes=$((changes + 1))
}
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}
# temp_file DIR: a new empty file in DIR, removed on exit unless renamed.
temp_file() {
	local t
	t=$(mktemp "$1/.gitreceive-setup.XXXXXX")
	temp_files+=("$t")
	printf '%s' "$t"
}

# --- arguments and environment ----------------------------------------------

# Validation comes first and uses only bash builtins: nothing on the node is
# touched for a bad argument (a test runs this part on the test host).

wanted=()
declare -A seen=()
for p in "${STACK[@]}" "$@"; do
	if ! [[ $p =~ ^[a-z0-9][a-z0-9+.-]+$ ]]; then
		die "package name $(printf '%q' "$p") is not a Debian package name (^[a-z0-9][a-z0-9+.-]+\$); fix the package list"
	fi
	[[ -n ${seen[$p]:-} ]] && continue
	seen[$p]=1
	wanted+=("$p")
done

[[ $(id -u) == 0 ]] || die "update-server-script.sh must run as root"
[[ -n ${SERVERROOT:-} ]] || die "SERVERROOT is not set; it must name the extracted serverroot/ directory"
SERVERROOT=${SERVERROOT%/}
[[ $SERVERROOT == /* && -d $SERVERROOT/etc ]] ||
	die "SERVERROOT=$SERVERROOT is not an absolute path to an extracted serverroot/ (no etc/ inside)"

# Two setups of one node at once would race on apt, users and files. Every
# command that may leave a daemon behind (apt-get, nginx, uwsgi) runs with
# fd 9 closed, or that daemon would hold the lock for ever.
exec 9>/run/gitreceive-setup.lock
if ! flock -n 9; then
	say "waiting for another setup run on this node to finish"
	flock -w 600 9 || die "another update-server-script.sh has held /run/gitreceive-setup.lock for 10 minutes; is it stuck?"
fi

# --- packages ---------------------------------------------------------------

missing=()
for p in "${wanted[@]}"; do
	# One line per installed architecture (libc6:amd64, libc6:i386).
	status=$(dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null || true)
	[[ $'\n'$status$'\n' == *$'\n'"install ok installed"$'\n'* ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
	say "packages: ${#wanted[@]} installed, nothing to do"
else
	log=$(temp_file /run)
	export DEBIAN_FRONTEND=noninteractive
	# Wait for a dpkg lock held by, say, unattended-upgrades after boot.
	apt_wait=(-o DPkg::Lock::Timeout=300)
	if ! apt-get -q "${apt_wait[@]}" update >"$log" 2>&1 9>&-; then
		tail -n 20 "$log" >&2
		die "packages: apt-get update failed (output above); check the node's network and apt sources"
	fi
	# confold: an upgrade keeps config files an operator edited.
	if ! apt-get -q "${apt_wait[@]}" install -y --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing[@]}" >"$log" 2>&1 9>&-; then
		tail -n 30 "$log" >&2
		die "packages: apt-get install ${missing[*]} failed (output above)"
	fi
	say "packages: installed ${missing[*]}"
	changes=$((changes + ${#missing[@]}))
fi
for tool in nginx uwsgi; do
	command -v "$tool" >/dev/null || die "$tool not found after installing the packages; check: dpkg -l ${STACK[*]}"
done
# Vassals say `plugins = python3` or `plugins = 0:php`.
for plugin in python3 php; do
	[[ -e /usr/lib/uwsgi/plugins/${plugin}_plugin.so ]] ||
		die "uWSGI plugin $plugin missing (/usr/lib/uwsgi/plugins/${plugin}_plugin.so); check: dpkg -l uwsgi-plugin-$plugin"
done

# --- users and processes ----------------------------------------------------

# Every instance runs as its own user, which the node agent creates when the
# instance first starts here (DESIGN.md decision 9); nodes set up by earlier
# versions also have the shared user gitreceive-app, whose vassals keep running
# until their instance is deployed again.
#
# Process lists: with hidepid=invisible, a user sees only its own processes
# in /proc (root sees all), so no instance learns another's processes,
# command lines or environment. Made persistent in /etc/fstab.
proc_opts=$(findmnt -n -o OPTIONS /proc 2>/dev/null || true)
if [[ ,$proc_opts, == *,hidepid=invisible,* || ,$proc_opts, == *,hidepid=2,* ]]; then
	say "/proc: hidepid=invisible"
else
	mount -o remount,hidepid=invisible /proc || die "/proc: mount -o remount,hidepid=invisible /proc failed"
	changed "/proc: remounted with hidepid=invisible (users see only their own processes)"
fi
if ! grep -Eq '^[[:space:]]*[^#[:space:]]+[[:space:]]+/proc[[:space:]]' /etc/fstab 2>/dev/null; then
	printf '%s\n' "proc /proc proc defaults,hidepid=invisible 0 0 # gitreceive: users see only their own processes" >>/etc/fstab
	changed "/etc/fstab: /proc with hidepid=invisible at boot"
fi

# --- directories ------------------------------------------------------------

# ensure_dir DIR MODE [OWNER GROUP]: DIR exists, owned by OWNER:GROUP (root
# by default), with MODE (octal, as stat prints it: 755, 2750). Metadata is
# only touched when it differs. chmod gets five digits: with fewer, GNU chmod
# keeps a directory's setgid bit and every rerun would "fix" it again.
ensure_dir() {
	local dir=$1 mode=$2 owner=${3:-root} group=${4:-root} octal
	octal=0000$mode
	octal=${octal: -5}
	if [[ ! -d $dir ]]; then
		[[ -e $dir || -L $dir ]] && die "$dir exists but is not a directory; move it away and rerun"
		mkdir -p "$dir"
		chown "$owner:$group" "$dir"
		chmod "$octal" "$dir"
		changed "created $dir"
	elif [[ -L $dir || $(stat -c '%a %U %G' "$dir") != "$mode $owner $group" ]]; then
		[[ -L $dir ]] && die "$dir is a symlink; remove it and rerun"
		chown "$owner:$group" "$dir"
		chmod "$octal" "$dir"
		changed "fixed $dir: now $owner:$group $mode"
	fi
}
dirs_before=$changes
ensure_dir "$APP_HOME" 755
# 711 here and on APP/ below: nobody but root lists the apps or instances;
# each instance's directory is open only to its user and group.
ensure_dir "$APPS_DIR" 711
ensure_dir /var/log/gitreceive 755
# LogsDir: the agent makes APP/ (root, 711) and APP/INSTANCE/ (the
# instance user's, 700: SILVER_LOGS, app.log) in it.
ensure_dir /var/log/gitreceive/apps 711
# nginx's access and error logs per instance: root's, never the app's;
# APP/INSTANCE/ is readable by the instance's group only.
ensure_dir /var/log/gitreceive/nginx 711
ensure_dir /var/lib/gitreceive 755
ensure_dir /etc/gitreceive 755
ensure_dir /etc/gitreceive/nginx 755   # per-instance server blocks
ensure_dir /etc/gitreceive/vassals 755 # per-release uWSGI vassals
# HTTPS (the receiver's certificates and ACME answers): root's only; the
# keys in certs/HOST/ are 0600, and nginx's master reads them as root.
ensure_dir /etc/gitreceive/certs 700
ensure_dir /var/lib/gitreceive/acme-challenge 755
# /run is a tmpfs: after a reboot this is gone and made again here (and by
# systemd: tmpfiles.d/gitreceive.conf says the same).
ensure_dir /run/gitreceive 755
# The vassals' sockets: root's, so no app can rename, replace or remove
# one. Each vassal binds its socket as root and hands it to its instance's
# user and nginx's group (660); nginx's group may look inside, nobody else.
ensure_dir /run/gitreceive/sockets 750 root www-data
# The emperor's log says which vassal started and why one failed: root's and
# the adm group's, like the system's logs.
if [[ ! -e $EMPEROR_LOG ]]; then
	install -m 640 -o root -g adm /dev/null "$EMPEROR_LOG"
	changed "created $EMPEROR_LOG"
elif [[ $(stat -c '%a %U %G' "$EMPEROR_LOG") != "640 root adm" ]]; then
	chown root:adm "$EMPEROR_LOG"
	chmod 640 "$EMPEROR_LOG"
	changed "fixed $EMPEROR_LOG: now root:adm 640"
fi
((changes > dirs_before)) || say "directories: in place"

# --- files ------------------------------------------------------------------

# note_change PATH: what must happen because PATH changed.
note_change() {
	case $1 in
	/etc/nginx/*) nginx_changed=1 ;;
	/etc/systemd/system/*) unit_changed=1 ;;
	"$EMPEROR_INI") emperor_changed=1 ;;
	esac
}

# install_file SRC DST: DST gets SRC's content and mode, owned by root, unless
# it has them already. A new file is renamed into place, so nginx or the
# emperor never read a half-written one.
install_file() {
	local src=$1 dst=$2 mode dir tmp
	mode=$(stat -c '%a' "$src")
	if [[ -f $dst && ! -L $dst ]] && cmp -s -- "$src" "$dst" &&
		[[ $(stat -c '%a %u %g' "$dst") == "$mode 0 0" ]]; then
		return 0
	fi
	dir=${dst%/*}
	if [[ ! -d $dir ]]; then
		mkdir -p "$dir"
		changed "created $dir"
	fi
	tmp=$(temp_file "$dir")
	cat -- "$src" >"$tmp"
	chown root:root "$tmp"
	chmod "$mode" "$tmp"
	mv -f -T -- "$tmp" "$dst"
	changed "updated $dst"
	note_change "$dst"
}

mapfile -d '' -t sources < <(find "$SERVERROOT" -type f -print0 | sort -z)
((${#sources[@]} > 0)) || die "no files under SERVERROOT=$SERVERROOT; extract the server files again"
files_before=$changes
new_list=""
for src in "${sources[@]}"; do
	dst=${src#"$SERVERROOT"}
	install_file "$src" "$dst"
	new_list+=$dst$'\n'
done

# Files an older serverroot installed and this one no longer has.
if [[ -f $INSTALLED_LIST ]]; then
	while IFS= read -r old; do
		[[ -n $old && $'\n'$new_list != *$'\n'"$old"$'\n'* ]] || continue
		if [[ -f $old || -L $old ]]; then
			rm -f -- "$old"
			changed "removed $old (no longer in server-files)"
			note_change "$old"
		fi
	done <"$INSTALLED_LIST"
fi
if [[ ! -f $INSTALLED_LIST ]] || [[ $(<"$INSTALLED_LIST")$'\n' != "$new_list" ]]; then
	tmp=$(temp_file "${INSTALLED_LIST%/*}")
	printf '%s' "$new_list" >"$tmp"
	chmod 644 "$tmp"
	mv -f -T -- "$tmp" "$INSTALLED_LIST"
	changed "recorded the installed files in $INSTALLED_LIST"
fi

# Debian's default site also claims default_server on :80; ours replaces it.
if [[ -e $DEFAULT_SITE || -L $DEFAULT_SITE ]]; then
	rm -f -- "$DEFAULT_SITE"
	changed "removed $DEFAULT_SITE (gitreceive's default server replaces it)"
	nginx_changed=1
fi
((changes > files_before)) || say "files: ${#sources[@]} up to date"
if ((nginx_changed)); then
	: >"$NGINX_RELOAD_PENDING"
elif [[ -e $NGINX_RELOAD_PENDING ]]; then
	nginx_changed=1
fi

# --- services ---------------------------------------------------------------

systemctl_or_die() {
	systemctl "$@" || die "systemctl $* failed; see: journalctl -xe"
}

nginx_test() {
	local out
	if ! out=$(nginx -t -q 2>&1); then
		printf '%s\n' "$out" >&2
		die "nginx: the configuration test failed (above); nginx was not started or reloaded"
	fi
}

# running_pid PIDFILE NAME: prints the pid in PIDFILE if it is a live process
# whose name starts with NAME (a stale pidfile may name a reused pid).
running_pid() {
	local pid comm
	[[ -r $1 ]] || return 1
	pid=$(tr -dc '0-9' <"$1")
	[[ -n $pid ]] || return 1
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
	[[ $comm == "$2"* ]] || return 1
	printf '%s' "$pid"
}

# wait_pid PIDFILE NAME: like running_pid, waiting up to 5 s for a daemon that
# was just started to write its pidfile.
wait_pid() {
	local i
	for ((i = 0; i < 50; i++)); do
		running_pid "$1" "$2" && return 0
		sleep 0.1
	done
	return 1
}

if [[ -d /run/systemd/system ]]; then
	if ((unit_changed)); then
		systemctl_or_die daemon-reload
		say "systemd: unit files reloaded"
	fi
	for unit in nginx gitreceive-emperor; do
		if ! systemctl is-enabled --quiet "$unit"; then
			systemctl_or_die enable --quiet "$unit"
			changed "$unit: enabled"
		fi
	done
	# Debian's own emperor (/etc/uwsgi-emperor) would be a second, idle one.
	if [[ $(systemctl is-enabled uwsgi-emperor 2>/dev/null || true) != masked ]]; then
		systemctl_or_die mask --now --quiet uwsgi-emperor
		changed "uwsgi-emperor: masked (Debian's emperor; gitreceive-emperor replaces it)"
	fi

	if ! systemctl is-active --quiet nginx; then
		nginx_test
		systemctl_or_die start nginx
		rm -f -- "$NGINX_RELOAD_PENDING"
		changed "nginx: started"
	elif ((nginx_changed)); then
		nginx_test
		systemctl_or_die reload nginx
		rm -f -- "$NGINX_RELOAD_PENDING"
		changed "nginx: reloaded"
	else
		say "nginx: running"
	fi
	if ! systemctl is-active --quiet gitreceive-emperor; then
		systemctl_or_die start gitreceive-emperor
		changed "emperor: started"
	elif ((emperor_changed || unit_changed)); then
		say "emperor: running; its config changed, apply with: systemctl restart gitreceive-emperor (stops every app for a moment; until then new releases start without their cgroup)"
	else
		say "emperor: running"
	fi
else
	# No systemd as PID 1 (containers, test nodes): run the daemons directly.
	# Their stdio goes to files, never to our stdout: an ssh session or a
	# caller's pipe would otherwise stay open as long as they run.
	if pid=$(running_pid "$NGINX_PIDFILE" nginx); then
		if ((nginx_changed)); then
			nginx_test
			out=$(nginx -s reload 2>&1) || die "nginx: reload failed: $out"
			rm -f -- "$NGINX_RELOAD_PENDING"
			changed "nginx: reloaded (pid $pid)"
		else
			say "nginx: running (pid $pid)"
		fi
	else
		nginx_test
		err=$(temp_file /run)
		nginx </dev/null >/dev/null 2>"$err" 9>&- || die "nginx: start failed: $(<"$err")"
		pid=$(wait_pid "$NGINX_PIDFILE" nginx) || die "nginx: started but $NGINX_PIDFILE names no nginx process; see /var/log/nginx/error.log"
		rm -f -- "$NGINX_RELOAD_PENDING"
		changed "nginx: started (pid $pid)"
	fi

	if pid=$(running_pid "$EMPEROR_PIDFILE" uwsgi); then
		if ((emperor_changed)); then
			say "emperor: running (pid $pid); its config changed, apply with: kill -TERM $pid, then rerun setup (stops every app for a moment; until then new releases start without their cgroup)"
		else
			say "emperor: running (pid $pid)"
		fi
	else
		rm -f -- "$EMPEROR_PIDFILE"
		# emperor.ini daemonizes when NOTIFY_SOCKET is not set. Vassals
		# inherit the emperor's environment: give it a clean one, as
		# systemd would, not this script's.
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
			uwsgi --ini "$EMPEROR_INI" </dev/null >>"$EMPEROR_LOG" 2>&1 9>&- ||
			die "emperor: uwsgi --ini $EMPEROR_INI failed; see $EMPEROR_LOG"
		pid=$(wait_pid "$EMPEROR_PIDFILE" uwsgi) ||
			die "emperor: started but no emperor wrote $EMPEROR_PIDFILE within 5 s; see $EMPEROR_LOG"
		changed "emperor: started (pid $pid)"
	fi
fi

if ((changes == 0)); then
	say "setup done: nothing changed"
elif ((changes == 1)); then
	say "setup done: 1 change"
else
	say "setup done: $changes changes"
fi
