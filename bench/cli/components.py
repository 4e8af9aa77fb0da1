"""`bench components`: what is registered (built in, entry points, --include) and its options."""

from __future__ import annotations

from bench.cli.common import INCLUDE_HELP


def cmd_components(args) -> int:
    """Registered adapters, metrics and datasets: name, where it comes from, and its options with defaults."""
    from bench import registry
    for ref in args.include:
        registry.include(ref)
    kinds = {"adapters": "model adapter", "metrics": "metric", "datasets": "dataset"}
    for label in ([args.kind] if args.kind else list(kinds)):
        reg = registry.KINDS[kinds[label]]
        print(f"{label}:")
        for name in reg.names():
            line = f"  {name:<16} {reg.origin(name)}"
            if args.options:
                try:
                    opts = reg.resolve(name).validate_options({})
                    line += "\n" + "\n".join(f"      {k} = {v!r}" for k, v in opts.items())
                except Exception as e:          # an optional dependency missing: say so, list the rest
                    line += f"  (cannot be loaded here: {type(e).__name__}: {e})"
            print(line)
    return 0



def add(sub) -> None:
    p = sub.add_parser("components", help="list registered adapters, metrics and datasets (built in, entry "
                       "points, --include)")
    p.add_argument("kind", nargs="?", choices=["adapters", "metrics", "datasets"])
    p.add_argument("--options", action="store_true", help="also list each one's options and defaults")
    p.add_argument("--include", action="append", default=[], metavar="MODULE_OR_PATH", help=INCLUDE_HELP)
    p.set_defaults(fn=cmd_components)

