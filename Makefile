# make test-deploy: provision, deploy, roll back, back up and restore real throw-away Debian 12
# hosts on this machine with the playbooks in ansible/ (root; see tests/deploy/run.sh, and
# tests/deploy/README.md for the measured times). DEPLOY_SCENARIO=one|two|three|all picks the
# one-host, two-host or three-host (monitoring, the alert that acts, off-host backups, the
# standby and failover) scenario, or all three ("all" runs them side by side; DEPLOY_PARALLEL=0
# one after the other); ci is one and two (what .ci/run runs); drill the restore drill with
# 2,000,000 hires, on its own.
DEPLOY_SCENARIO ?= all

.PHONY: test-deploy lint-deploy

test-deploy:
	tests/deploy/run.sh $(DEPLOY_SCENARIO)

# Only ansible-lint (production profile), with the pinned tools of requirements-deploy.txt.
lint-deploy:
	test -x /var/cache/acme-deploy-test/venv/bin/ansible-lint || { python3 -m venv /var/cache/acme-deploy-test/venv && /var/cache/acme-deploy-test/venv/bin/pip install -q -r requirements-deploy.txt; }
	cd ansible && PATH=/var/cache/acme-deploy-test/venv/bin:$$PATH ansible-lint --profile production
