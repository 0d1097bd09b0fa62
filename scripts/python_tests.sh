#!/usr/bin/env bash
# Builds the redraft Python package (pyproject.toml, python/) into a virtual environment on
# Debian's PyTorch and runs its pytest suite (python/tests). Idempotent: a second run installs
# nothing and rebuilds nothing unless a source changed.
#   REDRAFT_PY_VENV=DIR        the virtual environment (default build-python/venv)
#   REDRAFT_TORCH_THREADS=N    torch threads in the tests (default 1)
#   REDRAFT_NATIVE_ARCH=OFF    build the extension for baseline x86-64 instead of -march=native
#   extra arguments go to pytest, e.g. `bash scripts/python_tests.sh -k hf -x`
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the C++ build dependencies, plus Python with torch, venv and headers.
bash scripts/deps.sh python3-torch python3-venv python3-dev

venv=${REDRAFT_PY_VENV:-build-python/venv}
python=$venv/bin/python
if [ ! -x "$python" ]; then
  echo "creating $venv (sees Debian's torch and numpy)"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
"$python" -c "import torch" || { echo "error: $venv cannot import torch (Debian python3-torch)"; exit 1; }

# Python packages from PyPI, only when the pinned list changed. numpy stays Debian's: torch 1.13
# is built against numpy 1.x.
stamp=$venv/.redraft-requirements
if ! cmp -s python/requirements-test.txt "$stamp"; then
  numpy_version=$("$python" -c "import numpy; print(numpy.__version__)")
  "$python" -m pip install -q --disable-pip-version-check -r python/requirements-test.txt \
    -c <(echo "numpy==$numpy_version")
  cp python/requirements-test.txt "$stamp"
fi

# The package itself, only when its sources changed (the CMake build directory persists, so a
# rebuild is incremental).
sources=$( (find include python/src python/redraft -type f \( -name '*.hpp' -o -name '*.cpp' -o -name '*.py' \) ;
            echo pyproject.toml; echo python/CMakeLists.txt) | LC_ALL=C sort | xargs sha256sum | sha256sum)
package_stamp=$venv/.redraft-package
if [ "$(cat "$package_stamp" 2>/dev/null)" != "$sources" ]; then
  echo "building and installing the redraft Python package (log: build-python/pip-install.log)"
  launcher=()
  command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  # -march=native unless REDRAFT_NATIVE_ARCH=OFF (python/CMakeLists.txt; passed every time, since
  # the build directory's CMake cache would keep an earlier OFF)
  launcher+=("-DREDRAFT_NATIVE_ARCH=${REDRAFT_NATIVE_ARCH:-ON}")
  if ! CMAKE_ARGS="${launcher[*]}" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      "$python" -m pip install -v --disable-pip-version-check --no-build-isolation --no-deps . \
      > build-python/pip-install.log 2>&1; then
    tail -n 60 build-python/pip-install.log
    echo "error: building the redraft Python package failed"
    exit 1
  fi
  echo "$sources" > "$package_stamp"
fi

# pytest exit codes: 0 all passed, 1 some failed, 2 interrupted, 3 internal error, 4 usage
# error, 5 no tests collected. Only 0 is success; 5 means the suite was not found.
set +e
REDRAFT_TORCH_THREADS=${REDRAFT_TORCH_THREADS:-1} "$python" -m pytest -p no:cacheprovider -q python/tests "$@"
rc=$?
set -e
case $rc in
  0) ;;
  5) echo "error: pytest collected no tests from python/tests" ;;
  *) echo "error: the Python tests failed (pytest exit code $rc)" ;;
esac
exit $rc
