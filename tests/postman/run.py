"""``make postman``: the Postman collection of docs/postman/ run by newman against a live stack
(API, a real worker, the dispatcher) on the embedded default, SQLite and kombu's SQLAlchemy
transport in a temporary folder: with ``AUTH=required`` and a key of scope write, then with
``AUTH=off`` and no key.

    python -m tests.postman.run [--auth required|off|both] [-- extra newman run arguments]

newman (the npm package, NEWMAN_VERSION) is installed on first use under var/newman, with no
package.json and nothing global; node and npm must be on PATH. Exits non-zero when an assertion
of the collection fails, printing the stack's logs.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from service.commands.supervisor import stop_on_signals
from tests.fuzz.run import backprop, live_stack, print_logs

ROOT = Path(__file__).resolve().parents[2]
NEWMAN_VERSION = "6.2.2"
NEWMAN_PREFIX = ROOT / "var" / "newman"
COLLECTION = ROOT / "docs" / "postman" / "backprop.postman_collection.json"
ENVIRONMENT = ROOT / "docs" / "postman" / "backprop.postman_environment.json"
REQUEST_TIMEOUT_MS = 30_000
# The whole run takes seconds; this bounds it should a poll loop or the server hang.
RUN_TIMEOUT_MS = 300_000


def install_newman() -> Path:
    """The newman executable under var/newman, installed there when it is missing or another
    version."""
    package = NEWMAN_PREFIX / "node_modules" / "newman" / "package.json"
    if not package.exists() or json.loads(package.read_text())["version"] != NEWMAN_VERSION:
        npm_install = ["npm", "install", "--no-save", "--no-audit", "--no-fund"]
        subprocess.run(
            [*npm_install, "--prefix", str(NEWMAN_PREFIX), f"newman@{NEWMAN_VERSION}"], check=True
        )
    return NEWMAN_PREFIX / "node_modules" / ".bin" / "newman"


def write_key(env: dict[str, str]) -> str:
    """A new key of scope write for tenant postman, in the database of ``env``."""
    return backprop(env, "keys", "create", "--tenant", "postman", "--scope", "write").split()[-1]


def newman(executable: Path, base_url: str, api_key: str, extra: list[str]) -> int:
    command = [
        str(executable),
        "run",
        str(COLLECTION),
        "--environment",
        str(ENVIRONMENT),
        "--env-var",
        f"baseUrl={base_url}",
        "--env-var",
        f"apiKey={api_key}",
        "--timeout-request",
        str(REQUEST_TIMEOUT_MS),
        "--timeout",
        str(RUN_TIMEOUT_MS),
        *extra,
    ]
    return subprocess.run(command, cwd=ROOT).returncode


def run_collection(auth: str, executable: Path, extra: list[str]) -> int:
    print(f"== newman (AUTH={auth}) ==", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"postman-{auth}-") as folder:
        logs = Path(folder)
        with live_stack("embedded", logs, auth) as (base_url, env):
            api_key = write_key(env) if auth == "required" else ""
            status = newman(executable, base_url, api_key, extra)
        if status != 0:
            print_logs(logs)
        return status


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.postman.run", description=__doc__)
    parser.add_argument("--auth", choices=["required", "off", "both"], default="both")
    parser.add_argument("newman_args", nargs="*", help="after --: for newman run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    executable = install_newman()
    modes = ["required", "off"] if args.auth == "both" else [args.auth]
    failed = [auth for auth in modes if run_collection(auth, executable, args.newman_args) != 0]
    if failed:
        print(f"newman found failures with AUTH={', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
