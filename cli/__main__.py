"""`python -m reelrt` and the `reelrt` command."""
from reelrt.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
