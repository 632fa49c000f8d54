# HomeCluster — one entry point for tools, tests and the lab.
# Caches that survive between runs live under $(HOMECLUSTER_CACHE) (default ~/.cache/homecluster).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

HOMECLUSTER_CACHE ?= $(HOME)/.cache/homecluster
export HOMECLUSTER_CACHE
VENV := $(HOMECLUSTER_CACHE)/venv
export PATH := $(HOMECLUSTER_CACHE)/bin:$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PYTHON := $(VENV)/bin/python
MOLECULE_SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))

.PHONY: e2e help venv tools apt-packages collection-link lint sanity units pytest molecule slow-tests test \
        build demo lab-up lab-down lab-status clean-cache

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# The stamp is named by the content of the requirement files, so a fresh clone (new mtimes)
# does not reinstall anything.
REQ_STAMP := $(VENV)/.stamp-$(shell cat requirements.txt requirements.yml | sha256sum | cut -c1-16)
$(REQ_STAMP):
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/ansible-galaxy collection install -r requirements.yml
	@rm -f $(VENV)/.stamp-*; touch $@

collection-link:
	@mkdir -p .collections/ansible_collections/homecluster
	@test -L .collections/ansible_collections/homecluster/platform || \
	  ln -sfn ../../.. .collections/ansible_collections/homecluster/platform

venv: $(REQ_STAMP) collection-link ## Python virtualenv with the pinned dependencies

apt-packages: ## Debian packages (Ceph, git, openssl) when missing
	@bash lab/tools/apt-packages.sh

tools: venv apt-packages ## Build the real tools (talosctl, helm, kube-*, etcd, kwok, sops, age, kustomize)
	$(PYTHON) lab/tools/build.py
	@bash lab/tools/ansible-test-prep.sh

lint: venv ## yamllint, ruff, ansible-lint (production profile), argument specs in step with defaults
	@echo "== yamllint"; yamllint --strict .
	@echo "== ruff"; ruff check .
	@echo "== ansible-lint"; ansible-lint --offline --profile production
	@echo "== argument specs against defaults"; $(PYTHON) lab/tools/check_argspecs.py
	@echo "== pytest module names unique"; $(PYTHON) lab/tools/check_test_names.py
	@echo "== docs/reference current (lab/tools/gen_docs.py)"; $(PYTHON) lab/tools/gen_docs.py --check
	@echo "== GitHub workflows against their schema"; check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

sanity: venv ## ansible-test sanity
	@bash lab/tools/ansible-test.sh sanity

units: venv ## ansible-test units
	@bash lab/tools/ansible-test.sh units

pytest: tools ## pytest: lab, simulators, modules against real tools, the preflight corpus; go test of the Talos simulator
	@echo "== go test (lab/talos_sim)"; cd lab/talos_sim && go test ./...
	@echo "== pytest"; $(PYTHON) -m pytest -q tests/integration tests/preflight lab

molecule: tools ## Every molecule scenario, one after the other
	@for s in $(MOLECULE_SCENARIOS); do \
	  echo "== molecule test -s $$s"; \
	  $(TIMED) "molecule $$s" molecule test -s $$s || { echo "molecule scenario $$s FAILED"; exit 1; }; \
	done

# The molecule scenarios and the e2e side by side, in $(TEST_LANES) lanes (molecule/lanes.yml
# says which ones share addresses); each job's log is kept under $(TEST_LOGS).
TEST_LANES ?= 2
TEST_LOGS ?= $(HOMECLUSTER_CACHE)/test-logs
slow-tests: tools ## pytest's parts, every molecule scenario and the e2e, side by side (TEST_LANES=2)
	@$(PYTHON) lab/tools/lanes.py --lanes $(TEST_LANES) --logs $(TEST_LOGS) --times "$(TEST_TIMES)" \
	  go-test pytest-preflight pytest-integration $(MOLECULE_SCENARIOS) e2e

e2e: tools ## site.yml on the lab: cold run, rerun changed=0, --check --diff with one change per layer
	@echo "== end to end"; $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

# Every step of `make test` is timed; the table is printed at the end (and when a step fails) and
# kept outside the source tree, in $(TEST_TIMES).
TEST_TIMES ?= $(HOMECLUSTER_CACHE)/test-times/last.tsv
export TEST_TIMES
TIMED = bash lab/tools/timed.sh "$(TEST_TIMES)"

test: ## Everything CI runs, with a time table per step
	@rm -f "$(TEST_TIMES)" "$(dir $(TEST_TIMES))failures.txt"
	@$(TIMED) tools $(MAKE) --no-print-directory tools
	@$(TIMED) lint $(MAKE) --no-print-directory lint
	@$(TIMED) sanity $(MAKE) --no-print-directory sanity
	@$(TIMED) units $(MAKE) --no-print-directory units
	@$(TIMED) "pytest, molecule, e2e (wall, $(TEST_LANES) lanes)" $(MAKE) --no-print-directory slow-tests
	@bash lab/tools/timed.sh --table "$(TEST_TIMES)"
	@echo "make test: lint, sanity, units, go test, pytest, molecule ($(words $(MOLECULE_SCENARIOS)) scenarios) and e2e passed"

build: venv ## Build the collection tarball
	ansible-galaxy collection build --force --output-path $(HOMECLUSTER_CACHE)/dist .

lab-up: tools ## Start the lab (control plane, chart repository)
	@bash lab/up

lab-down: ## Stop everything the lab started
	@bash lab/down

lab-status: ## Show what the lab runs
	@bash lab/status

demo: tools ## Bring the lab up and show it
	@bash lab/demo

clean-cache: ## Remove the virtualenv and built tools
	rm -rf $(HOMECLUSTER_CACHE)
