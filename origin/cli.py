"""The ``headwater`` command: ``serve``, ``create``, ``key-token``, ``inspect``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from conf.logs import setup_logging
from conf.settings import Settings, SettingsError, load_settings, setting_names
from media.bmff import BoxReader
from media.boxes import dump, parse_box
from media.errors import MediaError


def _settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML configuration file (also $HEADWATER_CONFIG)")
    parser.add_argument("--root", help="content root: a folder (default ./content)")
    parser.add_argument("--http", metavar="HOST:PORT", help="HTTP listener (default 0.0.0.0:8080)")
    parser.add_argument(
        "--rtmp", metavar="HOST:PORT", help='RTMP listener (default 0.0.0.0:1935; "" for none)'
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any setting by its dotted name, e.g. ingest.max_box_size=32MiB",
    )


def _settings(args: argparse.Namespace) -> Settings:
    flags: dict[str, Any] = {
        k: getattr(args, k) for k in ("root", "http", "rtmp") if getattr(args, k) is not None
    }
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise SettingsError(f"--set {item!r}: expected NAME=VALUE (names: {', '.join(setting_names())})")
        flags[name.strip()] = value
    return load_settings(args.config, os.environ, flags)


def cmd_serve(args: argparse.Namespace) -> int:
    from origin.server import run

    settings = _settings(args)
    setup_logging(settings.log.level, settings.log.format)
    asyncio.run(run(settings))
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    from ingest.points import PointRegistry
    from storage.keys import PointId
    from storage.points import PointStore
    from storage.roots import open_store

    settings = _settings(args)
    values = {}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep:
            raise SettingsError(f"--option {item!r}: expected NAME=VALUE, e.g. dvr_window_length=60")
        values[name.strip()] = value
    options = settings.points.with_values(values)
    store = PointStore(open_store(settings.root, settings.storage))
    registry = PointRegistry(store, settings.points, auto_create=False)
    point = asyncio.run(registry.create(PointId.parse(args.point.strip("/").removesuffix(".isml")), options))
    print(f"created /{point.pid}.isml in {settings.root}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    path = Path(args.file)
    reader = BoxReader(max_box_size=1 << 34)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            for raw in reader.feed(chunk):
                box, _ = parse_box(raw.data, base=raw.offset)
                for line in dump([box]):
                    print(line)
    reader.close()
    return 0


def cmd_key_token(args: argparse.Namespace) -> int:
    import time

    from origin.key_tokens import mint_token
    from origin.playout import token_subject
    from storage.keys import PointId

    settings = _settings(args)
    if not settings.playout.key_token_secret:
        raise SettingsError("playout.key_token_secret is not set: this origin serves no keys")
    ttl = args.ttl if args.ttl is not None else settings.playout.key_token_ttl
    point = str(PointId.parse(args.point.removesuffix(".isml").strip("/")))
    subject = token_subject(args.location.strip("/"), point)
    print(mint_token(settings.playout.key_token_secret, subject, int(time.time()) + ttl))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="headwater", description="Headwater live-streaming origin")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the origin")
    _settings_args(serve)
    serve.set_defaults(func=cmd_serve)
    create = sub.add_parser("create", help="create a publishing point in the content root")
    _settings_args(create)
    create.add_argument("point", help="publishing point path, e.g. live/channel1")
    create.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="server manifest option, e.g. dvr_window_length=60",
    )
    create.set_defaults(func=cmd_create)
    key_token = sub.add_parser("key-token", help="mint a token for a publishing point's HLS keys")
    _settings_args(key_token)
    key_token.add_argument("point", help="publishing point path, e.g. live/channel1")
    key_token.add_argument("--ttl", type=int, help="seconds the token stays valid (playout.key_token_ttl)")
    key_token.add_argument(
        "--location", default="", help="the location the keys are played through, e.g. aes128"
    )
    key_token.set_defaults(func=cmd_key_token)
    inspect = sub.add_parser("inspect", help="print the box tree of an ISO-BMFF file")
    inspect.add_argument("file")
    inspect.set_defaults(func=cmd_inspect)
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except BrokenPipeError:  # output piped into `head`
        sys.stderr.close()
        return 0
    except (SettingsError, MediaError, ValueError, OSError) as exc:
        print(f"headwater: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from origin.errors import status_for

        if status_for(exc) == 500:
            raise
        print(f"headwater: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
