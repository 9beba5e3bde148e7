#!/usr/bin/env bash
# Cargo's runner for the functions that `cargo lambda watch` starts in local runs (set by
# local_stack.py through CARGO_TARGET_<host>_RUNNER): points the function's runtime API at
# runtime_shim.py, which fixes cargo-lambda's deadline header (see there), then runs it.
if [[ -n "${LOCAL_RUNTIME_SHIM:-}" && -n "${AWS_LAMBDA_RUNTIME_API:-}" ]]; then
  export AWS_LAMBDA_RUNTIME_API="http://${LOCAL_RUNTIME_SHIM}/${AWS_LAMBDA_RUNTIME_API#http://*/}"
fi
exec "$@"
