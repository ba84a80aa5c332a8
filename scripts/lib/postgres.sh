# scripts/lib/postgres.sh — the private PostgreSQL cluster of scripts/servers: certificates, initdb, the server, roles.
# Sourced, not run; the sourcing script defines log, die, spawn, free_ports, dir and client_port first.
# shellcheck shell=bash

# The newest installed server's bin dir (Debian keeps them out of PATH).
pg_bindir() {
	local d
	d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
	[[ -n $d && -x $d/initdb && -x $d/postgres && -x $d/pg_isready ]] || return 1
	printf '%s' "$d"
}

# initdb and the server refuse to run as root: as root they run as Debian's `postgres` user (which must reach DIR).
pg_as() {
	if ((EUID == 0)); then
		id -u postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' user (Debian's postgresql package makes it)"
		printf '%s\n' setpriv --reuid=postgres --regid=postgres --init-groups
	fi
}

# A CA, a server certificate for 127.0.0.1/localhost signed by it, tenure_mtls's client certificate, and a CA that
# signed nothing (for the "untrusted server certificate" tests). EC P-256, valid 30 days.
pg_certs() { # dir
	local t=$1
	mkdir -p "$t"
	(
		cd "$t"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
			-subj /CN=tenure-test-postgres-ca -keyout ca-key.pem -out ca.pem
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
			-subj /CN=tenure-test-other-ca -keyout other-ca-key.pem -out other-ca.pem
		local leaf cn ext
		for leaf in server client; do
			case $leaf in
			server) cn=localhost ext="subjectAltName=IP:127.0.0.1,DNS:localhost" ;;
			client) cn=tenure_mtls ext="extendedKeyUsage=clientAuth" ;;
			esac
			openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$cn" \
				-keyout "$leaf-key.pem" -out "$leaf.csr"
			openssl x509 -req -in "$leaf.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
				-extfile <(printf '%s\n' "$ext") -out "$leaf.pem"
		done
		chmod 600 server-key.pem
	) >/dev/null 2>&1 || die "openssl could not make the PostgreSQL test certificates in $t"
}

launch_postgres() {
	local c data="$dir/postgres" tls="$dir/pg-tls"
	local -a as
	read -r c <<<"$(free_ports 1)"
	[[ $c ]] || die "could not pick a free port"
	client_port[postgres]=$c
	mapfile -t as < <(pg_as)
	rm -rf "${data:?}"
	mkdir -p "$data"
	if [[ ! -s $dir/pg-password ]]; then
		# Every role's password (a test cluster on loopback); tests read it from the file or the env.
		od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$dir/pg-password"
		chmod 644 "$dir/pg-password"
	fi
	[[ -f $tls/server.pem ]] || pg_certs "$tls"
	if ((${#as[@]})); then
		chmod o+x "$dir" # the server runs as postgres and must reach its data dir
		chown -R postgres: "$data" "$tls/server-key.pem"
		"${as[@]}" test -w "$data" ||
			die "user postgres cannot reach $data: every parent of DIR must be searchable by others (chmod o+x)"
	fi
	"${as[@]}" "$pg_bin/initdb" -D "$data" -U postgres --auth=scram-sha-256 --pwfile="$dir/pg-password" \
		-E UTF8 --locale=C --no-instructions >"$dir/postgres-initdb.log" 2>&1 ||
		die "initdb failed; see $dir/postgres-initdb.log"
	# tenure_mtls must come over TLS with a client certificate its CA signed; everyone else with a password.
	cat >"$data/pg_hba.conf" <<-EOF
		hostssl all tenure_mtls 127.0.0.1/32 scram-sha-256 clientcert=verify-full
		host    all tenure_mtls 127.0.0.1/32 reject
		host    all all         127.0.0.1/32 scram-sha-256
	EOF
	# max_connections: a Tenure session is one connection plus one per lock it holds or waits for at once, and the
	# conformance suite runs 50 contending sessions per test, two tests at a time.
	spawn postgres "${as[@]}" "$pg_bin/postgres" -D "$data" -c listen_addresses=127.0.0.1 -c "port=$c" \
		-c unix_socket_directories= -c max_connections=600 -c shared_buffers=32MB \
		-c ssl=on -c "ssl_cert_file=$tls/server.pem" -c "ssl_key_file=$tls/server-key.pem" \
		-c "ssl_ca_file=$tls/ca.pem" -c log_min_messages=warning -c log_min_error_statement=panic
}

# PgBouncer in front of the cluster: database `tenure_tx` pooled per transaction (which Tenure must refuse) and
# `tenure_session` pooled per session (which keeps advisory locks working). It refuses to run as root too.
launch_pgbouncer() {
	local c b="$dir/pgbouncer"
	local -a as
	read -r c <<<"$(free_ports 1)"
	[[ $c ]] || die "could not pick a free port"
	client_port[pgbouncer]=$c
	mapfile -t as < <(pg_as)
	rm -rf "${b:?}"
	mkdir -p "$b"
	printf '"tenure" "%s"\n' "$(<"$dir/pg-password")" >"$b/userlist.txt"
	cat >"$b/pgbouncer.ini" <<-EOF
		[databases]
		tenure_tx = host=127.0.0.1 port=${client_port[postgres]} dbname=tenure pool_mode=transaction
		tenure_session = host=127.0.0.1 port=${client_port[postgres]} dbname=tenure pool_mode=session
		[pgbouncer]
		listen_addr = 127.0.0.1
		listen_port = $c
		unix_socket_dir =
		auth_type = scram-sha-256
		auth_file = $b/userlist.txt
		pool_mode = session
		max_client_conn = 500
		default_pool_size = 20
		ignore_startup_parameters = extra_float_digits
	EOF
	((${#as[@]})) && chown -R postgres: "$b"
	spawn pgbouncer "${as[@]}" "$pgbouncer_bin" "$b/pgbouncer.ini"
}

# Roles and the database, once the server answers.
setup_postgres() {
	local pw
	pw="$(<"$dir/pg-password")"
	PGPASSWORD="$pw" "$psql_bin" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${client_port[postgres]}" -U postgres \
		-d postgres >>"$dir/postgres.log" 2>&1 <<-SQL
			CREATE ROLE tenure LOGIN PASSWORD '$pw';
			CREATE DATABASE tenure OWNER tenure;
			CREATE ROLE tenure_norights LOGIN PASSWORD '$pw';
			CREATE ROLE tenure_mtls LOGIN PASSWORD '$pw' IN ROLE tenure;
		SQL
}
