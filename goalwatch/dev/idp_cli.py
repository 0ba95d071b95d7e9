"""``goalwatch idp`` serves the development identity provider; ``goalwatch token`` prints an
access token from it, for ``curl -H "Authorization: Bearer $TOKEN"`` (docs/dev-idp.md)."""

from __future__ import annotations

import argparse
import sys

from goalwatch.settings import environment_help, settings_or_exit


def add_idp_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``idp`` and ``token`` to the ``goalwatch`` command."""
    from goalwatch.dev.idp import IdpSettings

    plain = argparse.RawDescriptionHelpFormatter
    idp = commands.add_parser(
        "idp",
        help="run the development OpenID Connect provider (never in production)",
        description="Serve the development identity provider `goalwatch up` starts: demo\n"
        "users and clients, tokens the services accept. Development only.",
        epilog=environment_help(IdpSettings),
        formatter_class=plain,
    )
    idp.set_defaults(func=_idp)
    token = commands.add_parser(
        "token",
        help="print an access token from the running development provider",
        description="Print an access token for a demo person (--as) or a client (--client)\n"
        "from the development provider `goalwatch up` runs, e.g.\n"
        '  export TOKEN=$(goalwatch token --as zhang-wei)\n  curl -H "Authorization: Bearer '
        '$TOKEN" http://127.0.0.1:8002/v1/people',
        epilog=environment_help(IdpSettings),
        formatter_class=plain,
    )
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("--as", dest="user", metavar="USER", help="a demo person's id (zhang-wei)")
    who.add_argument("--client", metavar="ID", help="a client id (goalwatch-dev, his, ...)")
    token.set_defaults(func=_token)


def _idp(_: argparse.Namespace) -> int:
    from goalwatch.dev.idp import IdpSettings, run

    return run(settings_or_exit(IdpSettings))


def _token(args: argparse.Namespace) -> int:
    from goalwatch.dev.idp import IdpSettings, TokenRequestError, read_client_secrets, request_token

    settings = settings_or_exit(IdpSettings)
    secret = None
    if args.client is not None:
        # Read where the provider keeps them: the same GOALWATCH_STATE_DIR finds them.
        secret = read_client_secrets(settings.key_dir).get(args.client)
        if secret is None:
            print(
                f"goalwatch: no secret for client {args.client!r} in {settings.key_dir}/: is the "
                "provider running (`goalwatch up`, `goalwatch idp`) with this "
                "GOALWATCH_STATE_DIR, and is the client in its users file?",
                file=sys.stderr,
            )
            return 2
    try:
        body = request_token(settings.issuer, user=args.user, client=args.client, secret=secret)
    except TokenRequestError as exc:
        print(
            f"goalwatch: {exc}; start it with `goalwatch up` or `goalwatch idp` "
            "(GOALWATCH_IDP_PORT moves it)",
            file=sys.stderr,
        )
        return 2
    print(body["access_token"])
    return 0
