#!/usr/bin/env bash
# Wheels for `make gpu-check` on a machine without network (Python 3.12, manylinux x86_64, a CUDA
# torch and numpy/pandas/scipy/matplotlib/seaborn/jinja2/pyyaml/psutil/pytest(-benchmark,-timeout)/
# tqdm/pyarrow/filelock preinstalled, but no MLflow): downloads MLflow's tracking client
# (mlflow-skinny, the version this checkout's venv runs) with the SQL store it needs (SQLAlchemy,
# Alembic) and every dependency into .whl/, writes .whl/requirements.txt for gpu_check, and fails
# when the folder exceeds MAX_MIB. Carry .whl/ to the GPU machine with the checkout.
#
#     tools/gpu_wheels.sh              # then: make gpu-check (on the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_MIB=${MAX_MIB:-60}
PY=${PY:-.venv/bin/python}
MLFLOW_VERSION=$("$PY" -c "import mlflow; print(mlflow.__version__)")
rm -rf .whl
mkdir -p .whl
printf '%s\n' "mlflow-skinny==${MLFLOW_VERSION}" sqlalchemy alembic > .whl/requirements.txt
"$PY" -m pip download --quiet --dest .whl --only-binary=:all: --python-version 3.12 --implementation cp \
    --abi cp312 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 -r .whl/requirements.txt
size_mib=$(du -sm .whl | cut -f1)
echo "gpu_wheels: $(ls .whl/*.whl | wc -l) wheels, ${size_mib} MiB in .whl/ (mlflow-skinny ${MLFLOW_VERSION})"
if [ "$size_mib" -ge "$MAX_MIB" ]; then
    echo "gpu_wheels: .whl/ is ${size_mib} MiB, over the ${MAX_MIB} MiB limit" >&2
    exit 1
fi
