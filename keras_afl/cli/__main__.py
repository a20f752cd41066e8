"""`python -m keras_afl.cli ...` runs the `keras-afl` command line (as `python -m keras_afl`)."""

import sys

from keras_afl.cli import main

if __name__ == "__main__":
    sys.exit(main())
