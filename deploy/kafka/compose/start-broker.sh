#!/usr/bin/env bash
# Compose's Kafka broker (apache/kafka image): format the storage once with every SCRAM login (KRaft keeps
# them in its metadata log: KIP-900), then run the broker, which logs in to itself as `admin`.
# KAFKA_<USER>_PASSWORD sets a login; admin's is required, a login without one is not created.
# Logins added after the first start: kafka-configs.sh --alter --entity-type users (docs/security.md).
set -euo pipefail
umask 077
bin=${KAFKA_BIN:-/opt/kafka/bin}
template=${KAFKA_TEMPLATE:-$(dirname "$0")/server.properties}
run=${KAFKA_RUN_DIR:-/tmp/kafka}  # the container's own /tmp: the filled-in configs hold the admin login
users=(admin worker notifier rollout sink retrain console ingest)  # the principals of acls.txt, and admin

die() { echo "start-broker: $*" >&2; exit 2; }

scram=()
for user in "${users[@]}"; do
  var="KAFKA_${user^^}_PASSWORD"
  password=${!var:-}
  if [[ -z $password ]]; then
    [[ $user == admin ]] && die "$var is not set"
    continue
  fi
  # the login goes into a JAAS line and a --add-scram argument: no quotes, commas or brackets
  [[ $password =~ ^[A-Za-z0-9_-]{16,}$ ]] || die "$var must be 16 or more letters, digits, '_' or '-'"
  scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$password]")
done

jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\";"
truststore=$(sed -n 's/^ssl.truststore.location=//p' "$template")
mkdir -p "$run"
{ cat "$template"; echo "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$jaas"; } > "$run/server.properties"
# for the healthcheck and operators' kafka-*.sh tools inside this container
cat > "$run/admin.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$jaas
ssl.truststore.type=PEM
ssl.truststore.location=$truststore
PROPS

# --ignore-formatted: the logins are written on the first start only; later starts keep the stored ones
cluster_id=$("$bin/kafka-storage.sh" random-uuid | tail -n 1)
"$bin/kafka-storage.sh" format --ignore-formatted -t "$cluster_id" -c "$run/server.properties" "${scram[@]}"
exec "$bin/kafka-server-start.sh" "$run/server.properties"
