# Shared by scripts/serve and scripts/test: make the virtualenv and install the project
# into it, again only when pyproject.toml changed. Sourced, not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
extras=${1:-}
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)${extras:+-$extras}"
if [ ! -f "$stamp" ]; then
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --upgrade pip
  # llama-cpp-python has no wheel for most machines and compiles llama.cpp (8 to 10 minutes on
  # two cores, once: pip caches the wheel). A native build uses whatever this CPU has, and its
  # AMX kernel crashes on some; this portable x86-64 build runs anywhere AVX2 does. The
  # variable applies only to source builds; elsewhere it is ignored.
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
  echo "Installing into .venv (the first time, llama-cpp-python compiles for several minutes)…"
  .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
