"""`python -m keras_afl ...` runs the `keras-afl` command line."""

import sys

from keras_afl.cli import main

if __name__ == "__main__":
    sys.exit(main())
