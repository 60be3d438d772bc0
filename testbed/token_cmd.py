"""``testbed token``: issue a bearer token for the platform's API (city_platform/auth.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import platformdirs

from testbed.settings import Settings

DESCRIPTION = """\
Print a bearer token (a JWT signed with HS256) for the NGSI-LD API of a platform started with
--auth-key FILE; send it as 'Authorization: Bearer <token>' (RFC 6750).

Scopes nest: admin implies write, write implies read.
  read   GET/HEAD, and the query-only POSTs /entityOperations/query and
         /temporal/entityOperations/query
  write  create/update/delete of entities, attributes, batch operations, temporal data,
         subscriptions, csourceRegistrations and csourceSubscriptions
  admin  also POST/DELETE /jsonldContexts
Tenants: the NGSILD-Tenant values the token may act on; '*' is every tenant, '' the default
tenant (requests without an NGSILD-Tenant header).
"""


def default_key_file() -> Path:
    """The key `testbed up` keeps: <user data dir>/city/security/api-jwt.key (credentials.py)."""
    return Path(platformdirs.user_data_dir("r197-testbed")) / "city" / "security" / "api-jwt.key"


class KeyFileError(Exception):
    """The key file cannot serve as a token key; the message says why, in words."""


def read_key(path: Path) -> bytes:
    """The HS256 key in ``path`` (surrounding white space dropped); KeyFileError otherwise."""
    from city_platform.auth import MIN_KEY_BYTES  # noqa: PLC0415  # keeps `testbed --help` fast

    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise KeyFileError(
            f"cannot read the token key file {str(path)!r}: {exc.strerror}"
        ) from None
    if not key:
        raise KeyFileError(f"the token key file {str(path)!r} is empty")
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(
            f"the token key in {str(path)!r} has {len(key)} bytes; HS256 needs at least "
            f"{MIN_KEY_BYTES} (RFC 7518 3.2)"
        )
    return key


def register(sub: Any, epilog: str) -> None:
    parser = sub.add_parser(
        "token",
        help="print a bearer token for the platform's API (--auth-key)",
        description=DESCRIPTION,
        epilog=epilog
        + "\nExample: testbed token --scope read --tenant '*' --subject dashboard --ttl 3600",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help=f"the platform's --auth-key file (default {default_key_file()})",
    )
    parser.add_argument(
        "--scope",
        action="append",
        choices=("read", "write", "admin"),
        help="a scope (repeatable; default read)",
    )
    parser.add_argument(
        "--tenant",
        action="append",
        metavar="NAME",
        help="a tenant the token is bound to (repeatable; '*' every tenant; default '')",
    )
    parser.add_argument("--subject", default="testbed", help="who the token is for (sub claim)")
    parser.add_argument(
        "--ttl",
        type=float,
        metavar="SECONDS",
        help="lifetime in seconds (default: no expiry; rotate the key to revoke)",
    )
    parser.set_defaults(func=run_token)


def run_token(args: argparse.Namespace, settings: Settings) -> int:
    from city_platform.auth import issue_token  # noqa: PLC0415

    path: Path = args.key or default_key_file()
    try:
        key = read_key(path)
    except KeyFileError as exc:
        print(f"token: {exc}", file=sys.stderr)
        return 2
    if args.ttl is not None and args.ttl <= 0:
        print(f"token: --ttl must be positive, got {args.ttl:g}", file=sys.stderr)
        return 2
    token = issue_token(
        key,
        subject=args.subject,
        scopes=args.scope or ["read"],
        tenants=args.tenant if args.tenant is not None else [""],
        ttl=args.ttl,
    )
    print(token)
    return 0
