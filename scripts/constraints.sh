#!/usr/bin/env bash
# Print docker/constraints.txt: the Airflow image's lock, taken from the venv the tests pass on.
# Airflow publishes constraints-<version>/constraints-3.11.txt for its own image; that file could not
# be fetched where this project is built, so the image pins what this project was tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "# Lock for the Airflow image: the versions of the venv this project's tests pass on (pip freeze, Python 3.11)."
echo "# Airflow's own constraints-3.3.2/constraints-3.11.txt could not be fetched where this was made;"
echo "# regenerate with: make constraints  (see the README's Production section)."
.venv/bin/pip freeze --exclude-editable --all 2>/dev/null | grep -v -i -E '^(danqing-pipeline|pip)=='
