"""The `sculpt` command the wheel puts on PATH: the same command line as
the Rust binary, run in process."""
import sys


def main():
    from . import _sculpt, _use_installed_onnxruntime

    _use_installed_onnxruntime()
    try:
        _sculpt.run(["sculpt", *sys.argv[1:]])
    except _sculpt.SculptError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
