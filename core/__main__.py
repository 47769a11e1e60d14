"""`python -m core ...`. A config value out of range is refused here, before the CLI imports torch (about
4 s of a 2-core machine's time for a one-line answer); everything else is core.cli's."""

import json
import sys

from core.config import CLI_ALIASES, FIELD_SPECS, FIELD_TYPES, ConfigError, check_field

FLAG_NAMES = {flag: name for name, flag in CLI_ALIASES.items()}
NUMBERS = {"int": int, "float": float}


def out_of_range(argv: list[str]) -> str | None:
    """The message of the first numeric config flag (--lr -1, --epochs=0) out of its range, or None; a value
    that is not a number is left to the parser, which names it."""
    if not argv or argv[0] not in ("train", "submit"):
        return None
    for i, arg in enumerate(argv):
        flag, _, inline = arg.partition("=")
        name = FLAG_NAMES.get(flag[2:].replace("-", "_"), flag[2:].replace("-", "_"))
        if not flag.startswith("--") or name not in FIELD_SPECS or FIELD_TYPES[name] not in NUMBERS:
            continue
        text = inline if inline else (argv[i + 1] if i + 1 < len(argv) else "")
        try:
            check_field(name, NUMBERS[FIELD_TYPES[name]](text))
        except ValueError as err:  # ConfigError, or not a number (the parser's to say)
            if isinstance(err, ConfigError):
                return str(err)
    return None


if (problem := out_of_range(sys.argv[1:])) is not None:
    print(json.dumps({"error": problem}) if "--json" in sys.argv else f"error: {problem}",
          file=sys.stdout if "--json" in sys.argv else sys.stderr)  # fmt: skip
    sys.exit(2)

from core.cli import main  # noqa: E402  (after the check: it imports torch)

sys.exit(main())
