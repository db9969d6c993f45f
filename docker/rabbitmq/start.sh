#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Starts RabbitMQ as the container's first process, with one user (RABBITMQ_USER, password
# RABBITMQ_PASSWORD) allowed from the network, and no management plugin. The node name
# follows the container's fixed hostname, so that its queues survive a restart.
set -eu
: "${RABBITMQ_USER:?set RABBITMQ_USER}"
if [ -z "${RABBITMQ_PASSWORD:-}" ]; then
  echo "orthanc-enhance-rabbitmq: RABBITMQ_PASSWORD is not set: the queue would have no" \
       "password" >&2
  exit 64
fi
install -d -o rabbitmq -g rabbitmq /var/lib/rabbitmq /etc/rabbitmq
cat > /etc/rabbitmq/rabbitmq.conf <<CONF
listeners.tcp.default = 5672
default_user = $RABBITMQ_USER
default_pass = $RABBITMQ_PASSWORD
loopback_users = none
CONF
echo "[]." > /etc/rabbitmq/enabled_plugins
chown rabbitmq:rabbitmq /etc/rabbitmq/rabbitmq.conf /etc/rabbitmq/enabled_plugins
chmod 600 /etc/rabbitmq/rabbitmq.conf
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
