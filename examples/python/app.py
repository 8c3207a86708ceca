"""A hello program with no third-party packages (requirements.txt is empty), so the
python template builds it offline."""

import platform
import sys


def main() -> None:
    print(f"hello from python {sys.version.split()[0]} on {platform.machine()}")


if __name__ == "__main__":
    main()
