#!/usr/bin/env bash
# Install pedf-gateway as a service on a Debian/Ubuntu edge box (run as root from a checkout).
#   sudo deploy/install.sh            # installs to /opt/pedf, config in /etc/pedf, data in /var/lib/pedf
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv
id pedf >/dev/null 2>&1 || useradd --system --home /var/lib/pedf --shell /usr/sbin/nologin pedf
install -d -o pedf -g pedf /var/lib/pedf
install -d /etc/pedf /opt/pedf
[ -f /etc/pedf/site.yaml ] || install -m 0640 -g pedf "$src/examples/demo-site.yaml" /etc/pedf/site.yaml
python3 -m venv /opt/pedf/.venv
/opt/pedf/.venv/bin/pip install -q --upgrade pip
/opt/pedf/.venv/bin/pip install -q "$src"
install -m 0644 "$src/deploy/systemd/pedf-gateway.service" /etc/systemd/system/pedf-gateway.service
systemctl daemon-reload
echo "edit /etc/pedf/site.yaml (journal.path: /var/lib/pedf/journal.db), then: systemctl enable --now pedf-gateway"
