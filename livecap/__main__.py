import sys

try:
    from livecap.cli import main
except KeyboardInterrupt:  # Ctrl-C while the command line loads: nothing started, nothing to keep
    print("interrupted", file=sys.stderr)
    raise SystemExit(130) from None

main()
